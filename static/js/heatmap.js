// heatmap.js - explanation maps drawn in the browser exactly as the engine's PNG renderer
// draws them (core/render.h):
//
//   t = clamp(score / scale, -1, 1), scale = max |score| of the map (non-finite -> 0;
//   t = 0 everywhere for an all-zero map); t is upsampled to the picture (nearest: each
//   patch a block; smooth: bilinear, align_corners=False); then
//   colour map   t = -1 (40, 150, 255) blue, 0 black, +1 (255, 140, 0) orange,
//                channel = round(|t| * endpoint), halves up;
//   overlay      the endpoint colour of t's sign over the image with alpha = opacity * |t|.

export const NEG = [40, 150, 255];
export const POS = [255, 140, 0];

const clampT = (t) => (Number.isFinite(t) ? Math.max(-1, Math.min(1, t)) : 0);
const roundU8 = (v) => (v <= 0 ? 0 : v >= 255 ? 255 : Math.floor(v + 0.5));

/** render_colormap: [r, g, b] of t. */
export function colormap(t) {
  t = clampT(t);
  const e = t < 0 ? NEG : POS;
  const a = Math.abs(t);
  return [roundU8(a * e[0]), roundU8(a * e[1]), roundU8(a * e[2])];
}

/** The auto scale: max |score| (non-finite scores count as 0). */
export function mapScale(scores) {
  let m = 0;
  for (const v of scores) {
    if (Number.isFinite(v) && Math.abs(v) > m) m = Math.abs(v);
  }
  return m;
}

/** t per patch: clamp(score / scale, -1, 1); zeros when scale is 0. */
export function normalise(scores, scale) {
  const t = new Float32Array(scores.length);
  if (!(scale > 0)) return t;
  for (let i = 0; i < scores.length; i++) t[i] = clampT(scores[i] / scale);
  return t;
}

/**
 * t (rows x cols, row-major) upsampled to W x H: nearest takes patch
 * (floor(y*rows/H), floor(x*cols/W)); smooth is bilinear with PyTorch's
 * align_corners=False arithmetic.
 */
export function upsample(t, rows, cols, W, H, smooth) {
  const out = new Float32Array(W * H);
  if (!smooth) {
    const cx = new Int32Array(W);
    for (let x = 0; x < W; x++) cx[x] = Math.min(cols - 1, Math.floor((x * cols) / W));
    for (let y = 0; y < H; y++) {
      const r = Math.min(rows - 1, Math.floor((y * rows) / H)) * cols;
      const o = y * W;
      for (let x = 0; x < W; x++) out[o + x] = t[r + cx[x]];
    }
    return out;
  }
  const axis = (n, g) => {
    const i0 = new Int32Array(n);
    const i1 = new Int32Array(n);
    const w = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let s = ((i + 0.5) * g) / n - 0.5;
      if (s < 0) s = 0;
      const a = Math.min(Math.floor(s), g - 1);
      i0[i] = a;
      i1[i] = Math.min(a + 1, g - 1);
      w[i] = s - a;
    }
    return { i0, i1, w };
  };
  const ax = axis(W, cols);
  const ay = axis(H, rows);
  for (let y = 0; y < H; y++) {
    const r0 = ay.i0[y] * cols;
    const r1 = ay.i1[y] * cols;
    const wy = ay.w[y];
    const o = y * W;
    for (let x = 0; x < W; x++) {
      const x0 = ax.i0[x];
      const x1 = ax.i1[x];
      const wx = ax.w[x];
      const top = t[r0 + x0] * (1 - wx) + t[r0 + x1] * wx;
      const bot = t[r1 + x0] * (1 - wx) + t[r1 + x1] * wx;
      out[o + x] = top * (1 - wy) + bot * wy;
    }
  }
  return out;
}

/**
 * Paints an upsampled t into RGBA pixels (Uint8ClampedArray, W*H*4).
 * mode 'overlay': the endpoint colour with alpha |t| (the page shows it at the chosen
 * opacity, which gives the engine's alpha = opacity * |t|); mode 'map': the opaque
 * colour map (black at zero).
 */
export function paint(tUp, rgba, mode) {
  for (let i = 0, p = 0; i < tUp.length; i++, p += 4) {
    const t = tUp[i];
    if (mode === 'map') {
      const c = colormap(t);
      rgba[p] = c[0]; rgba[p + 1] = c[1]; rgba[p + 2] = c[2]; rgba[p + 3] = 255;
    } else {
      const e = t < 0 ? NEG : POS;
      rgba[p] = e[0]; rgba[p + 1] = e[1]; rgba[p + 2] = e[2];
      rgba[p + 3] = roundU8(Math.abs(t) * 255);
    }
  }
}

/**
 * Draws a map into a canvas of the given pixel size (the canvas is resized).
 * map: {scores, rows, cols}; opts: {smooth, mode}. Returns the scale used.
 */
export function drawHeat(canvas, map, W, H, opts) {
  if (canvas.width !== W) canvas.width = W;
  if (canvas.height !== H) canvas.height = H;
  const ctx = canvas.getContext('2d');
  const scale = mapScale(map.scores);
  const t = normalise(map.scores, scale);
  const img = ctx.createImageData(W, H);
  paint(upsample(t, map.rows, map.cols, W, H, opts.smooth), img.data, opts.mode);
  ctx.putImageData(img, 0, 0);
  return scale;
}

/**
 * The engine's overlay, pixel for pixel: out = round((1 - a) * image + a * colour),
 * a = opacity * |t| (mode 'overlay'), or the colour map (mode 'map'). base: RGBA pixels
 * of the image at W x H (or null for a black picture). Returns ImageData.
 */
export function composite(base, map, W, H, { smooth, mode, opacity }) {
  const scale = mapScale(map.scores);
  const tUp = upsample(normalise(map.scores, scale), map.rows, map.cols, W, H, smooth);
  const out = new ImageData(W, H);
  const d = out.data;
  for (let i = 0, p = 0; i < tUp.length; i++, p += 4) {
    const t = tUp[i];
    if (mode === 'map' || !base) {
      const c = colormap(mode === 'map' ? t : 0);
      d[p] = c[0]; d[p + 1] = c[1]; d[p + 2] = c[2];
    } else {
      const e = t < 0 ? NEG : POS;
      const a = opacity * Math.abs(t);
      for (let c = 0; c < 3; c++) d[p + c] = roundU8((1 - a) * base[p + c] + a * e[c]);
    }
    d[p + 3] = 255;
  }
  return { image: out, scale };
}

/** The legend's ramp from t = -1 through 0 to +1 (an odd width: the middle is exactly 0). */
export function drawRamp(canvas, width = 255, height = 1) {
  const w = width % 2 ? width : width - 1;
  canvas.width = w;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(w, height);
  for (let x = 0; x < w; x++) {
    let t = w > 1 ? -1 + (2 * x) / (w - 1) : 0;
    if (2 * x + 1 === w) t = 0;
    const c = colormap(t);
    for (let y = 0; y < height; y++) {
      const p = (y * w + x) * 4;
      img.data[p] = c[0]; img.data[p + 1] = c[1]; img.data[p + 2] = c[2]; img.data[p + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

/** C's "%.<p>g" (the engine's legend prints the scale with %.2g). */
export function formatG(x, p = 2) {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  const exp = Math.floor(Math.log10(Math.abs(Number(x.toPrecision(p)))));
  if (exp < -4 || exp >= p) {
    const [m, e] = x.toExponential(p - 1).split('e');
    const mant = m.includes('.') ? m.replace(/\.?0+$/, '') : m;
    const en = Number(e);
    return `${mant}e${en < 0 ? '-' : '+'}${String(Math.abs(en)).padStart(2, '0')}`;
  }
  const s = x.toFixed(Math.max(0, p - 1 - exp));
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/** A score for people: 3 significant digits, explicit sign. */
export function formatScore(v) {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const s = formatG(Math.abs(v), 3);
  return (v > 0 ? '+' : '\u2212') + s;
}
