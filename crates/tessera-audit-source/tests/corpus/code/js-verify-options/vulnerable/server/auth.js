const jwt = require('jsonwebtoken');

function authenticate(req) {
  const token = req.headers.authorization.slice(7);
  return jwt.verify(token, process.env.JWT_PUBLIC_KEY);
}

function legacy(token, key) {
  return jwt.verify(token, key, {
    algorithms: ['HS256', 'RS256', 'none'],
    ignoreExpiration: true,
    clockTolerance: 86400,
    audience: 'orders',
    issuer: 'https://auth.example.com',
  });
}

module.exports = { authenticate, legacy };
