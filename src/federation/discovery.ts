/**
 * Server discovery (server-server API, "Resolving server names"): turn a
 * server name into the address to connect to, the TLS name to verify and the
 * Host header to send.
 *
 * SCAFFOLD: implemented by the discovery/client work item.
 */
import type { BaseContext } from '../server/context.js';

export interface ResolvedServer {
  /** Host name or IP literal to open the TCP connection to. */
  host: string;
  port: number;
  /** Name the certificate must be valid for (and SNI). */
  tlsServerName: string;
  /** Value of the Host header. */
  hostHeader: string;
}

export class ServerDiscovery {
  constructor(protected readonly ctx: BaseContext) {}

  async resolve(serverName: string): Promise<ResolvedServer> {
    throw new Error(`server discovery not implemented (${serverName})`);
  }
}
