const fs = require('fs');
const path = require('path');

async function keyFor(token, db) {
  const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
  const pem = fs.readFileSync(path.join(__dirname, 'keys', header.kid));
  const { kid } = header;
  const row = await db.query(`SELECT pem FROM keys WHERE kid = '${kid}'`);
  const remote = await fetch(header.jku);
  const embedded = await importJWK(header.jwk);
  return [pem, row, remote, embedded];
}

module.exports = { keyFor };
