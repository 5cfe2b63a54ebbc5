/**
 * Which network addresses an outbound request made on a client's behalf (an HTTP tool) may reach.
 * Only public unicast addresses, by default: loopback, private, link-local, cloud metadata and the
 * other special ranges are refused, also when written as IPv4-mapped, NAT64 or 6to4 IPv6. Parsing
 * is ipaddr.js's (a small, long-kept library), not a hand-written one.
 */
import ipaddr from "ipaddr.js";

export type AddressClass = "public" | "loopback" | "private" | "link_local" | "metadata" | "unspecified" | "multicast" | "reserved";

/**
 * Cloud instance-metadata endpoints (AWS, AWS IPv6, ECS tasks, Alibaba, Oracle, Azure's WireServer).
 * Azure's sits in public space, so without this entry it would pass as public.
 */
const METADATA = new Set(["169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200", "192.0.0.192", "168.63.129.16"]);

const BY_RANGE: Record<string, AddressClass> = {
  unicast: "public",
  loopback: "loopback",
  private: "private",
  carrierGradeNat: "private",
  uniqueLocal: "private",
  linkLocal: "link_local",
  unspecified: "unspecified",
  multicast: "multicast",
};

/** Classifies an IP address (v4 or v6, as text). Throws on something that is not an IP address. */
export function classifyAddress(ip: string): AddressClass {
  const parsed = ipaddr.parse(ip.replace(/^\[|\]$/g, "").replace(/%.*$/, ""));
  const text = parsed.toNormalizedString();
  if (METADATA.has(text) || METADATA.has(parsed.toString())) return "metadata";
  if (parsed.kind() === "ipv6") {
    const v6 = parsed as ipaddr.IPv6;
    const range = v6.range();
    // IPv6 forms that carry an IPv4 address reach that address: classify it.
    if (range === "ipv4Mapped") return classifyAddress(v6.toIPv4Address().toString());
    const bytes = v6.toByteArray();
    if (range === "rfc6052") return classifyAddress(bytes.slice(12, 16).join("."));
    if (range === "6to4") return classifyAddress(bytes.slice(2, 6).join("."));
    return BY_RANGE[range] ?? "reserved";
  }
  return BY_RANGE[parsed.range()] ?? "reserved";
}

/** True for text that is an IP address rather than a host name. */
export const isIpAddress = (host: string): boolean => ipaddr.isValid(host.replace(/^\[|\]$/g, ""));
