module.exports = function login(req, res, refreshToken) {
  res.cookie('refresh_token', refreshToken, { httpOnly: true, secure: true, sameSite: 'strict', path: '/auth' });
  res.status(204).end();
};
