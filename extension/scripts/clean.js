// Removes the TypeScript output and the built labextension (so a production build starts clean).
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
for (const target of ['lib', 'tsconfig.tsbuildinfo', '../exosphere_nb/labextension']) {
  fs.rmSync(path.join(root, target), { recursive: true, force: true });
}
