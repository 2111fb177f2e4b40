const jwt = require('jsonwebtoken');

const KEY = process.env.JWT_KEY;
const OPTIONS = { algorithms: ['HS256'], audience: 'api', issuer: 'https://auth.example.com' };

async function refreshTokens(store, refreshToken) {
  const claims = jwt.verify(refreshToken, KEY, OPTIONS);
  if (!(await store.markUsed(claims.jti))) {
    await store.revokeFamily(claims.sid);
    throw new Error('refresh token presented twice');
  }
  return {
    access: jwt.sign({ sub: claims.sub }, KEY, { expiresIn: '15m' }),
    refresh: jwt.sign({ sub: claims.sub, sid: claims.sid }, KEY, { expiresIn: '30d' }),
  };
}

module.exports = { refreshTokens };
