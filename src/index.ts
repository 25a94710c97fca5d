/**
 * fourtuple as a library: the kernel facts, the ceiling model, the socket
 * table and its port pressure, the probe engine and the errors, each usable
 * without the CLI.
 */
export * from './errors.js';
export { type Fact } from './kernel/fact.js';
export { readKernelFacts, featuresOf, type KernelFacts, type KernelFeatures, type InterfaceAddress, type Listener, type ReadFactsOptions } from './kernel/facts.js';
export { scanProcNetTcp, TCP_STATES, type TcpRow } from './kernel/proc-net-tcp.js';
/** The socket table: a BPF iterator as root, netlink sock_diag through the FFI, /proc/net/tcp when neither is available. */
export { scanSockets, type ScanSocketsOptions, type ScanSocketsResult, type SocketTableSource } from './kernel/socket-table.js';
export { type SockDiagFilter } from './kernel/sock-diag.js';
/** Port pressure per destination: the streaming aggregator, and one whole scan of the table into it. */
export {
  PortPressure,
  STATE,
  byPressure,
  overThreshold,
  destinationKey,
  type PortPressureOptions,
  type PortPressureReport,
  type DestinationPressure,
  type ListenerLoad,
  type SourcePool as SourcePortPool,
  type PressureTotals,
  type PressureFacts,
  type StateName,
} from './model/port-pressure.js';
export { scanPorts, readPressureFacts, type PortScan, type PortScanOptions } from './engine/port-scan.js';
/**
 * Failed connect() and bind() calls, counted in the kernel as they happen (BPF on tracepoints, root):
 * attach a tracer of your own, or read the one a running `ports --prometheus`/`--watch` keeps.
 */
export { FailureTracer, failureTracer, liveFailures, MAX_KEYS as FAILURE_MAX_KEYS, type FailureCount, type FailureSnapshot } from './kernel/failure-tracer.js';
/** Client-side sockets per destination and state, kept by the kernel as they change (root), checked against full scans. */
export { KeptPorts, isKept, type KeptScan, type KeptInfo, type ReconcileResult } from './engine/kept-ports.js';
export { StateCounter, stateCounter, MAX_SOCKETS as KEPT_MAX_SOCKETS, MAX_DESTINATIONS as KEPT_MAX_DESTINATIONS, type KeptCounts, type DestinationStates } from './kernel/state-counts.js';
/** Who holds the ports: cgroup paths and what they name, processes by socket inode. */
export { cgroup2Mount, cgroupPaths, describeCgroup, socketHolders, type CgroupInfo, type ProcessInfo, type SocketHolders } from './kernel/owners.js';
export { FailureWindow, failureLine, failuresByDestination, FAILURE_WINDOW_S, type FailureWindowView } from './model/failures.js';
export { parseAddresses, parseEndpoints, parsePorts, parseIp, formatIp, formatEndpoint, isLoopback, type Endpoints, type Ip } from './model/address.js';
export { PortSet, type PortRange } from './model/port-set.js';
export { computeLimits, ephemeralPool, explicitPool, type Answer, type Constraint, type ConstraintId, type Limits, type LimitsInput } from './model/limits.js';
export { errnoMeaning, type ErrnoMeaning } from './model/errno.js';
export { STRATEGIES, isStrategy, type Strategy } from './model/strategy.js';
export { KERNEL_BYTES_PER_SOCKET } from './model/costs.js';
export { Probe, PROBE_DEFAULTS, defaultDuration, type ProbeOptions, type ProbeProgress, type ProbeResult, type StopReason } from './engine/probe.js';
/** `net.connect` with a pool of source addresses: a unique 4-tuple per destination, past EADDRNOTAVAIL. */
export { connect, type ConnectOptions } from './lib/connect.js';
/** Source allocator behind `connect`: round-robin per destination, tracks which (source, destination) pools are full. */
export { SourcePool, type ConnectStrategy, type SourcePoolOptions, type SourceUsage, type Lease, type RejectReason } from './lib/source-pool.js';
/** undici's `connect` option and http.Agent's `createConnection`, both drawing on `connect`. */
export { connector, createConnection, type Connector, type ConnectorOptions, type ConnectorRequest, type ConnectorCallback, type CreateConnection } from './lib/connector.js';
