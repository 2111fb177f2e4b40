import type { TesseraError } from './errors';

export type LogoutReason = 'user' | 'everywhere' | 'session_ended' | 'other_tab';

export interface TesseraOptions {
  /** Tessera's origin plus optional path prefix; default: the page's origin. */
  baseUrl?: string;
  /** Seconds before expiry to refresh proactively; default 60, capped at half the token lifetime. */
  refreshMargin?: number;
  /** Web Lock and BroadcastChannel name; default "tessera-session:" + the normalised baseUrl. */
  lockName?: string;
  /** Milliseconds before a request to Tessera is aborted; default 10000. */
  timeout?: number;
  fetch?: typeof fetch;
  /** Clock in milliseconds; default Date.now. */
  now?: () => number;
  onLogout?: (reason: LogoutReason) => void;
  /** Fired whenever a new access token is stored; never hands out the token itself. */
  onTokenRefreshed?: (info: { expiresAt: number }) => void;
  onError?: (error: TesseraError) => void;
}

export interface SessionInfo {
  id: string;
  created_at: number;
  last_used_at: number;
  expires_at: number;
  user_agent: string | null;
  client_id: string | null;
  current: boolean;
}

/** `GET /auth/migrate`: the rollout phase, and where this browser's legacy session is steered. */
export interface MigrationStatus {
  phase: string;
  /** `"token"`: offer `migrate()`; `"session"`: stay on the legacy login for now; `null`: no valid legacy session. */
  method: 'token' | 'session' | null;
}

export interface Tessera {
  init(): Promise<boolean>;
  login(username: string, password: string): Promise<void>;
  migrationStatus(): Promise<MigrationStatus>;
  migrate(): Promise<void>;
  logout(): Promise<void>;
  logoutEverywhere(): Promise<void>;
  getAccessToken(): Promise<string | null>;
  isLoggedIn(): boolean;
  expiresAt(): number | null;
  sessions(): Promise<SessionInfo[]>;
  endSession(id: string): Promise<void>;
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  dispose(): void;
}
