const KEYS = new Map(Object.entries(require('./keys.json')));

function keyFor(token) {
  const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
  return KEYS.get(header.kid);
}

module.exports = { keyFor };
