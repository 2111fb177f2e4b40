module.exports = function login(req, res, refreshToken) {
  res.cookie('refresh_token', refreshToken, { httpOnly: true });
  res.status(204).end();
};
