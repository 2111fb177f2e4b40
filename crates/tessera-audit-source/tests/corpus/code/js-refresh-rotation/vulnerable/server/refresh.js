const jwt = require('jsonwebtoken');
const express = require('express');

const router = express.Router();
const KEY = process.env.JWT_KEY;
const OPTIONS = { algorithms: ['HS256'], audience: 'api', issuer: 'https://auth.example.com' };

router.post('/auth/refresh', (req, res) => {
  const claims = jwt.verify(req.body.refresh_token, KEY, OPTIONS);
  res.json({ access_token: jwt.sign({ sub: claims.sub }, KEY, { expiresIn: '15m' }) });
});

function refreshTokens(refreshToken) {
  const claims = jwt.verify(refreshToken, KEY, OPTIONS);
  return {
    access: jwt.sign({ sub: claims.sub }, KEY, { expiresIn: '15m' }),
    refresh: jwt.sign({ sub: claims.sub, typ: 'refresh' }, KEY, { expiresIn: '30d' }),
  };
}

module.exports = { router, refreshTokens };
