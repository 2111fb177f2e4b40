const { verify } = require('jsonwebtoken');

const OPTIONS = { algorithms: ['ES256'], audience: 'admin', issuer: 'https://auth.example.com' };

module.exports = function requireAdmin(req, res, next) {
  const claims = verify(req.headers.authorization.slice(7), process.env.JWT_PUBLIC_KEY, OPTIONS);
  if (claims.role === 'admin') return next();
  res.status(403).end();
};
