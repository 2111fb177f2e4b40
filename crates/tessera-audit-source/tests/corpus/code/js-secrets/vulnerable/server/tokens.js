import jwt from 'jsonwebtoken';

const SECRET = process.env.JWT_SECRET || 'changeme';

export function issue(user) {
  return jwt.sign({ sub: user.id }, SECRET, { algorithm: 'HS256', expiresIn: '15m' });
}

export function issueService(name) {
  return jwt.sign({ sub: name }, 'a-hard-coded-service-secret-that-is-long-enough', { algorithm: 'HS256' });
}
