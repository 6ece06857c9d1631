// Type definitions for switchboard-client: the contract of src/index.js,
// described in README.md.

/** The error codes: the C names of switchboard/error.h without SB_E, words separated. */
export type ErrorCode =
  | 'NO_HANDLER' | 'TIMEOUT' | 'UNKNOWN_PEER' | 'NOT_CONNECTED' | 'PEER_GONE' | 'OFFLINE'
  | 'UNAUTHORIZED' | 'FORBIDDEN' | 'INVAL' | 'TOO_LARGE' | 'OVERLOADED' | 'BAD_FRAME'
  | 'DUP_NAME' | 'CANCELLED' | 'UNSUPPORTED' | 'NO_PEERS' | 'DRAINING' | 'INTERNAL'
  | 'APP' | 'UNKNOWN';

/** Wire code (1-63) -> code. */
export const CODES: Readonly<Record<number, ErrorCode>>;

export class SwitchboardError extends Error {
  constructor(code: ErrorCode, message?: string, extra?: { details?: unknown; data?: unknown; appCode?: string; peer?: string; wireCode?: number; cause?: unknown });
  readonly name: 'SwitchboardError';
  /** What to switch on. */
  readonly code: ErrorCode;
  /** The number an ERROR frame carries (0 for none). */
  readonly wireCode: number;
  /** Code APP: the handler's own error code ("MYERRCODE"), to switch on; never one of the router's codes. */
  readonly appCode?: string;
  /** Details a handler sent with its error, if any. */
  readonly details?: unknown;
  /** The same as details (its older name). */
  readonly data?: unknown;
  /** In requestAll() results: the peer the error is about. */
  readonly peer?: string;
}

/** A value MessagePack carries: see README.md, "Payloads". */
export type Payload = unknown;

export interface TlsOptions {
  /** PEM CA(s) the router's certificate must be signed by (default: Node's CAs). */
  ca?: string | Uint8Array | Array<string | Uint8Array>;
  /** Our certificate and key, for a router that requires one (mutual TLS). */
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  /** The name the router's certificate must carry (default: host, unless an address). */
  servername?: string;
  /** Any other option of node:tls connect(). */
  [option: string]: unknown;
}

export interface ConnectOptions {
  /** Router address (default "127.0.0.1"). */
  host?: string;
  /** Router port (default 7400). */
  port?: number;
  /** Peer name to ask for; default: the router assigns one. */
  name?: string | null;
  /** "client" (default) may send and request; "service" may also register handlers. */
  role?: 'client' | 'service';
  /** The shared secret of the role, for a router that requires one. */
  secret?: string | Uint8Array | null;
  /** TLS 1.3: true for the defaults, or node:tls options. In a browser, true makes the default url wss://. */
  tls?: boolean | TlsOptions | null;
  /** Browser only: the router's WebSocket endpoint, "ws://HOST:WS_PORT/v1/ws" (default: from host and port). */
  url?: string | null;
  /** Browser only: false uses WebSocket even where WebSocketStream exists (default: WebSocketStream when there). */
  webSocketStream?: boolean;
  /** A bearer token (a JWT, compact form) for a router with token keys, sent in HELLO on every connection over TCP, TLS and WebSocket; its subject becomes this peer's verified identity, and no secret is asked. Not a JWT (base64url parts joined by dots, at most 8192 bytes): INVAL. */
  token?: string | null;
  /** Default timeout of requests, ms; 0 (default) is the router's (30 s). */
  timeout?: number;
  /** Reconnect after a lost connection (default true). */
  reconnect?: boolean;
  /** Reconnect backoff: full jitter between these, the ceiling doubling per failure (100, 5000). */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Keep trying until the first connection succeeds instead of rejecting (default false). */
  waitOnFirstConnect?: boolean;
  /** With waitOnFirstConnect: reject after this many ms (0: never). */
  connectTimeout?: number;
  /** Connect + WELCOME (+ AUTH) must take at most this, ms (5000). */
  handshakeTimeout?: number;
  /** Stream bytes waiting unread before the client stops reading from the router (1 MiB). */
  highWaterMark?: number;
  /** Output bytes queued before chunk() and progress() wait for it to drain (1 MiB). */
  outHighWaterMark?: number;
  /** Presence events a watch keeps unread before dropping the oldest (10000). */
  presenceMax?: number;
  /** While reading is paused for flow control, a PING this often, ms (5000). */
  keepAliveMs?: number;
  /** Merged into HELLO's payload (the router logs it). */
  info?: Record<string, unknown> | null;
}

export interface Reply<T = any> {
  outcome: string;
  data: T;
}

export interface RequestOptions {
  /** Milliseconds the router waits for the final reply (default: the client's). */
  timeout?: number;
  /** Aborting it sends CANCEL and rejects with CANCELLED. */
  signal?: AbortSignal;
  /** Send to the peer of this name instead of a handler of the name. */
  to?: string;
}

export interface StreamPart<T = any> {
  type: 'progress' | 'chunk' | 'reply';
  outcome: string;
  data: T;
}

export interface ReplyStream<T = any> extends AsyncIterableIterator<StreamPart<T>> {
  /** Cancels the request and ends the iteration. */
  cancel(): void;
}

export type PeerResult<T = any> = { ok: true; outcome: string; data: T } | { ok: false; error: SwitchboardError };

export interface AllCounts {
  peers: number;
  ok: number;
  errors: number;
  timeouts: number;
  gone: number;
}

export interface AllResult<T = any> {
  /** One result per handler, by peer name. */
  results: Map<string, PeerResult<T>>;
  /** The router's tally. */
  counts: AllCounts;
}

export interface Identity {
  peer: string;
  role: string | null;
  /** The certificate subject under mutual TLS, or the bearer token's `sub`, else null. */
  subject: string | null;
  /** Every claim of the bearer token the sender authenticated with (the decoded claims object: `sub`, `exp`, custom claims), else null. Only a token the router verified sets it: no peer can. */
  claims: Record<string, unknown> | null;
}

export interface PresenceEvent {
  event: 'connected' | 'disconnected' | 'draining';
  peer: string;
  peerId: number;
  role: string | null;
  subject: string | null;
}

export interface PresenceWatch extends AsyncIterableIterator<PresenceEvent> {
  /** Resolves once the router has acknowledged the subscription. */
  readonly ready: Promise<void>;
  /** Events dropped because more than presenceMax waited unread. */
  readonly dropped: number;
  close(): void;
}

export interface Call {
  /** The name the message was sent to (useful in a catch-all). */
  readonly name: string;
  /** A request (expects an answer) or a send. */
  readonly isRequest: boolean;
  /** The sender's peer id (0: the program that embeds the router). */
  readonly from: number;
  /** The message's headers ({} for none); this client cannot set headers yet. */
  readonly headers: Readonly<Record<string, string>>;
  /** The sender's name as the router vouches for it, or null. */
  readonly peer: string | null;
  /** The sender's verified identity, or null. */
  readonly identity: Identity | null;
  /** What is left of the request's timeout when it arrived, ms. */
  readonly timeout: number;
  /** Aborted (reason: a SwitchboardError) when the requester cancels, the router gives up, or the connection is lost. */
  readonly signal: AbortSignal;
  readonly cancelled: boolean;
  /** The final reply; false if it could no longer be delivered. */
  reply(outcome: string, data?: Payload): boolean;
  /** A progress update; resolves once the output has room. */
  progress(outcome: string, data?: Payload): Promise<void>;
  /** A stream chunk; resolves once the output has room (await it: that is the flow control). */
  chunk(outcome: string, data?: Payload): Promise<void>;
  /** Ends the request with an error; false if it could no longer be delivered. */
  error(code: ErrorCode | number, message?: string, data?: Payload): boolean;
  /** Ends the request with an application error: the requester gets code 'APP', this appCode (1-64 bytes, no space), the message and details; false if it could no longer be delivered. A handler that throws a value with a string `code` (an Error or `{code, message|msg, details}`) sends the same. */
  appError(appCode: string, message?: string, details?: Payload): boolean;
  send(name: string, args?: Payload, opts?: { to?: string }): void;
  /** Chained: this call's signal and remaining time unless given. */
  request<T = any>(name: string, args?: Payload, opts?: RequestOptions): Promise<Reply<T>>;
  stream<T = any>(name: string, args?: Payload, opts?: RequestOptions): ReplyStream<T>;
}

export type Handler = (args: any, call: Call) => unknown | Promise<unknown>;

export interface RegisterOptions {
  /** An argument schema as a plain object: a JSON Schema document, or the original flat format (docs/protocol.md, "Argument schemas"). */
  schema?: Record<string, unknown> | null;
  /** Callable by services only. */
  internal?: boolean;
}

export interface ClientEvents {
  online: () => void;
  offline: (reason: SwitchboardError | null) => void;
  reconnected: () => void;
  draining: (reason: string) => void;
  error: (err: SwitchboardError) => void;
  presence: (ev: PresenceEvent) => void;
}

export class Client {
  /** Made by connect(). */
  private constructor();
  /** Our peer name (the router's choice if we asked for none). */
  readonly name: string | null;
  /** The router's id for this connection (0 while not connected). */
  readonly peerId: number;
  /** True while requests can be made. */
  readonly online: boolean;

  on<E extends keyof ClientEvents>(event: E, fn: ClientEvents[E]): this;
  once<E extends keyof ClientEvents>(event: E, fn: ClientEvents[E]): this;
  off<E extends keyof ClientEvents>(event: E, fn: ClientEvents[E]): this;

  /** Registers a handler (name null: the catch-all); resolves when the router has acknowledged it. */
  register(name: string | null, fn: Handler, opts?: RegisterOptions): Promise<void>;
  unregister(name: string | null): Promise<void>;

  send(name: string, args?: Payload, opts?: { to?: string }): void;
  sendTo(peer: string, name: string, args?: Payload): void;
  sendAll(name: string, args?: Payload): void;

  request<T = any>(name: string, args?: Payload, opts?: RequestOptions): Promise<Reply<T>>;
  requestTo<T = any>(peer: string, name: string, args?: Payload, opts?: Omit<RequestOptions, 'to'>): Promise<Reply<T>>;
  requestAll<T = any>(name: string, args?: Payload, opts?: Omit<RequestOptions, 'to'>): Promise<AllResult<T>>;
  stream<T = any>(name: string, args?: Payload, opts?: RequestOptions): ReplyStream<T>;

  presence(): PresenceWatch;

  /** Closes for good; open requests fail with OFFLINE. */
  close(): Promise<SwitchboardError | undefined>;
  /** Resolves when closed for good: undefined, or the error that made it give up. */
  closed(): Promise<SwitchboardError | undefined>;
}

/** Connects and resolves once online. */
export function connect(opts?: ConnectOptions): Promise<Client>;

/** What a transport tells the client core (docs/js-client.md, "Transports"). */
export interface TransportSink {
  /** The bytes can flow (after a TLS or WebSocket handshake). */
  open(): void;
  /** Bytes from the router, in order, cut anywhere. */
  data(bytes: Uint8Array): void;
  /** Output queued earlier has gone out. */
  drain(): void;
  /** The connection ended (once): null for a plain close, else why. */
  closed(err: SwitchboardError | null): void;
}

/** One connection, as the client core drives it. */
export interface Transport {
  /** Whole frames, one or more; the bytes must not be changed until sent. */
  write(bytes: Uint8Array): void;
  /** Bytes written and not yet sent. */
  readonly pending: number;
  /** Stop, and go on, delivering received bytes (flow control). */
  pause(): void;
  resume(): void;
  /** Close after what was written; close now. */
  close(): void;
  destroy(): void;
  /** Set by the core from WELCOME: the router's frame limit, for transports that cut writes into messages. */
  frameMax?: number;
}

/** What connectWith() takes instead of Node's TCP/TLS and node:crypto. */
export interface Environment {
  connect(opts: ConnectOptions, sink: TransportSink): Transport;
  hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array | Promise<Uint8Array>;
  random(n: number): Uint8Array;
  alloc(n: number): Uint8Array;
  now(): number;
}

/** connect() over another transport. */
export function connectWith(opts: ConnectOptions, env: Environment): Promise<Client>;
