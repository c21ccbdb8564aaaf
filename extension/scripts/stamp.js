// Writes build-stamp.json next to the built labextension: a hash of every source the build reads.
// tests/lab/test_lab_packaging.py recomputes it, so a source change without a rebuild fails the tests.
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const SOURCES = ['package.json', 'tsconfig.json', 'yarn.lock', 'src', 'style'];

function files(rel) {
  const full = path.join(root, rel);
  if (fs.statSync(full).isDirectory()) {
    return fs
      .readdirSync(full)
      .sort()
      .flatMap(name => files(`${rel}/${name}`));
  }
  return [rel];
}

const hash = crypto.createHash('sha256');
const listed = SOURCES.flatMap(files).sort();
for (const rel of listed) {
  hash.update(rel);
  hash.update('\0');
  hash.update(fs.readFileSync(path.join(root, rel)));
  hash.update('\0');
}
const out = path.join(root, '..', 'exosphere_nb', 'labextension', 'build-stamp.json');
const stamp = { sources_sha256: hash.digest('hex'), files: listed.length };
fs.writeFileSync(out, JSON.stringify(stamp, null, 2) + '\n');
console.log(`build stamp ${stamp.sources_sha256.slice(0, 12)} (${stamp.files} files) -> ${path.relative(root, out)}`);
