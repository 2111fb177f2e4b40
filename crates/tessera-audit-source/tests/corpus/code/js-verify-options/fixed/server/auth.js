const jwt = require('jsonwebtoken');

const VERIFY = { algorithms: ['RS256'], audience: 'orders', issuer: 'https://auth.example.com', clockTolerance: 5 };

function authenticate(req) {
  const token = req.headers.authorization.slice(7);
  // Not this: jwt.verify(token, key) — the options below pin the algorithm.
  const example = "jwt.verify(token, 'secret')";
  return jwt.verify(token, process.env.JWT_PUBLIC_KEY, VERIFY);
}

module.exports = { authenticate };
