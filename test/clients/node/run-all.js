'use strict';
// Runs every library script in turn against AMI_HOST/AMI_PORT (npm test).
// Exits non-zero when any flow of any library failed.
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const scripts = ['nami.js', 'asterisk-manager.js', 'asterisk-ami-client.js'];
let failed = false;
for (const s of scripts) {
  const r = spawnSync(process.execPath, [path.join(__dirname, s)], { stdio: 'inherit' });
  if (r.status !== 0) failed = true;
}
process.exit(failed ? 1 : 0);
