// Test data shared by test files.

/** `size` pseudo-random bytes (an LCG), the same for the same seed: incompressible test data. */
export function random(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}
