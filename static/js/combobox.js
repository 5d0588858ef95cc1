// combobox.js - a text box that filters a list of labels (WAI-ARIA combobox with a
// listbox popup): type to filter, Up/Down to move, Enter to choose, Escape to close.
//
//   const cb = new Combobox(inputEl, listEl, { onChoose: (item) => ..., max: 8 });
//   cb.setItems([{ value: 3, label: 'Dress', hint: '#3' }, ...]);

export class Combobox {
  constructor(input, list, { onChoose, max = 8 } = {}) {
    this.input = input;
    this.list = list;
    this.onChoose = onChoose;
    this.max = max;
    this.items = [];
    this.shown = [];
    this.active = -1;
    this.uid = `${list.id || 'cb'}-opt`;
    input.addEventListener('input', () => this.update());
    input.addEventListener('focus', () => { if (input.value.trim()) this.update(); });
    input.addEventListener('keydown', (e) => this.key(e));
    input.addEventListener('blur', () => setTimeout(() => this.close(), 150));
    list.addEventListener('mousedown', (e) => e.preventDefault()); // keep the focus in the box
    list.addEventListener('click', (e) => {
      const li = e.target.closest('[role="option"]');
      if (li) this.choose(Number(li.dataset.i));
    });
  }

  setItems(items) {
    this.items = items.map((it) => ({ ...it, lower: it.label.toLowerCase() }));
    if (!this.list.hidden) this.update();
  }

  /** Matches: labels starting with the query first, then those containing it, then word starts. */
  match(q) {
    q = q.trim().toLowerCase();
    if (!q) return [];
    const starts = [];
    const words = [];
    const contains = [];
    for (const it of this.items) {
      const i = it.lower.indexOf(q);
      if (i === 0) starts.push(it);
      else if (i > 0 && /[^a-z0-9]/.test(it.lower[i - 1])) words.push(it);
      else if (i > 0) contains.push(it);
      else if (String(it.value) === q) starts.push(it);
    }
    return starts.concat(words, contains);
  }

  update() {
    const all = this.match(this.input.value);
    this.shown = all.slice(0, this.max);
    this.list.replaceChildren();
    if (!this.input.value.trim()) { this.close(); return; }
    if (!this.shown.length) {
      const li = document.createElement('li');
      li.className = 'option-empty';
      li.textContent = 'No class matches';
      this.list.append(li);
    }
    this.shown.forEach((it, i) => {
      const li = document.createElement('li');
      li.id = `${this.uid}-${i}`;
      li.setAttribute('role', 'option');
      li.setAttribute('aria-selected', 'false');
      li.dataset.i = String(i);
      const name = document.createElement('span');
      name.textContent = it.label;
      li.append(name);
      if (it.hint) {
        const h = document.createElement('span');
        h.className = 'option-hint';
        h.textContent = it.hint;
        li.append(h);
      }
      this.list.append(li);
    });
    if (all.length > this.shown.length) {
      const li = document.createElement('li');
      li.className = 'option-more';
      li.textContent = `${all.length - this.shown.length} more: keep typing`;
      this.list.append(li);
    }
    this.list.hidden = false;
    this.input.setAttribute('aria-expanded', 'true');
    this.setActive(this.shown.length ? 0 : -1);
  }

  setActive(i) {
    this.active = i;
    for (const li of this.list.querySelectorAll('[role="option"]')) {
      const on = Number(li.dataset.i) === i;
      li.setAttribute('aria-selected', on ? 'true' : 'false');
      li.classList.toggle('active', on);
      if (on) li.scrollIntoView({ block: 'nearest' });
    }
    if (i >= 0) this.input.setAttribute('aria-activedescendant', `${this.uid}-${i}`);
    else this.input.removeAttribute('aria-activedescendant');
  }

  key(e) {
    const open = !this.list.hidden;
    if (e.key === 'ArrowDown') {
      e.preventDefault();
      if (!open) this.update();
      else if (this.shown.length) this.setActive((this.active + 1) % this.shown.length);
    } else if (e.key === 'ArrowUp') {
      e.preventDefault();
      if (open && this.shown.length) this.setActive((this.active - 1 + this.shown.length) % this.shown.length);
    } else if (e.key === 'Enter') {
      if (open && this.active >= 0) {
        e.preventDefault();
        this.choose(this.active);
      }
    } else if (e.key === 'Escape') {
      if (open) {
        e.preventDefault();
        this.close();
      } else if (this.input.value) {
        e.preventDefault();
        this.input.value = '';
      }
    }
  }

  choose(i) {
    const it = this.shown[i];
    if (!it) return;
    this.close();
    this.input.value = '';
    this.onChoose?.(it);
  }

  close() {
    this.list.hidden = true;
    this.input.setAttribute('aria-expanded', 'false');
    this.input.removeAttribute('aria-activedescendant');
    this.active = -1;
  }
}
