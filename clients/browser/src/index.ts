export { createTessera } from './client';
export {
  CookiesBlockedError,
  CsrfError,
  InvalidCredentialsError,
  InvalidResponseError,
  NetworkError,
  NotLoggedInError,
  RateLimitedError,
  ServerError,
  SessionEndedError,
  TesseraError,
} from './errors';
export type { LogoutReason, SessionInfo, Tessera, TesseraOptions } from './types';
