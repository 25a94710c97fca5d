/**
 * Per-connection costs measured on the reference machine (see
 * docs/measurements.md for the method and figures). The model uses them to
 * turn available memory into a number of connections.
 */

/** Kernel memory of one idle established TCP socket, in bytes (slab: TCP sock 2,368 + socket inode 832 + file 192 + dentry 192 + LSM 56, plus bind buckets; median of 7 quiet runs). */
export const KERNEL_BYTES_PER_SOCKET = 4036;

/**
 * Kernel memory of the server's end of a connection that waits in an accept
 * queue (the probe's queue sink): the TCP socket (2,368) and the
 * request_sock (320) that queues it until accept(); no file, socket inode
 * or dentry. /proc/slabinfo while holding 200,000 (docs/measurements.md).
 */
export const KERNEL_BYTES_PER_QUEUED_SOCKET = 2688;
