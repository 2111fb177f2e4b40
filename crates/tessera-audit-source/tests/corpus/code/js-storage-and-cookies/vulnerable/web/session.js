export function remember(token, refresh) {
  localStorage.setItem('access_token', token);
  document.cookie = `refresh_token=${refresh}; path=/`;
}
