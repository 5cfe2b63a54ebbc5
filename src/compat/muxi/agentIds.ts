/**
 * MUXI agent ids are the client's to choose (`{"id": "custom-agent-1"}`), and two apps may each choose
 * `support`: an agent a MUXI client creates gets an id of ours in the app's own namespace,
 * `mx.<app tag>.<client id>`, so apps never collide nor see each other's. The client only ever sees its
 * own id. An agent made through `/v1` (or the app's default agent) has no MUXI id: MUXI names it by its
 * own id. Pure: the routes hand in what the read model says exists.
 */
import { createHash } from "node:crypto";

/** The longest client-chosen agent id: with its prefix, our ids stay within `/v1`'s 100 characters. */
export const MAX_CLIENT_AGENT_ID = 86;

/** `mx.` and ten hex digits of the app id, then a dot: 14 characters. */
const prefixOf = (appId: string): string => `mx.${createHash("sha256").update(appId).digest("hex").slice(0, 10)}.`;

/** Our id of the agent a MUXI client of `appId` calls `clientId`. */
export const ourAgentId = (appId: string, clientId: string): string => prefixOf(appId) + clientId;

/** The id a MUXI client of `appId` knows our agent `agentId` by. */
export function clientAgentId(appId: string, agentId: string): string {
  const prefix = prefixOf(appId);
  return agentId.startsWith(prefix) ? agentId.slice(prefix.length) : agentId;
}

/**
 * The agent a MUXI path names: the app's MUXI agent of that id if it has one, else the agent of ours
 * with that very id (a `/v1` agent, the default agent). `exists` says whether the app has an agent.
 */
export function resolveAgentId(appId: string, clientId: string, exists: (agentId: string) => boolean): string {
  const ours = ourAgentId(appId, clientId);
  return exists(ours) ? ours : clientId;
}
