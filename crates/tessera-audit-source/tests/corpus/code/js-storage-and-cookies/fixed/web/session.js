let accessToken = null;

export function remember(token) {
  accessToken = token;
  localStorage.setItem('theme', 'dark');
}
