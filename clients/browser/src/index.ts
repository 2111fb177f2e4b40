export { createTessera } from './client';
export {
  CookiesBlockedError,
  CsrfError,
  InvalidCredentialsError,
  InvalidResponseError,
  NetworkError,
  NotInRolloutError,
  NotLoggedInError,
  RateLimitedError,
  ServerError,
  SessionEndedError,
  TesseraError,
  UseLegacyLoginError,
} from './errors';
export type { LogoutReason, MigrationStatus, SessionInfo, Tessera, TesseraOptions } from './types';
