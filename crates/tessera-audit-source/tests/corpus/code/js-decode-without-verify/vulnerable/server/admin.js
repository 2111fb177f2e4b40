const { decode } = require('jsonwebtoken');

module.exports = function requireAdmin(req, res, next) {
  const claims = decode(req.headers.authorization.slice(7));
  if (claims && claims.role === 'admin') return next();
  res.status(403).end();
};
