package messagingv1

// MaxReceiveResponseSize is the largest encoded ReceiveResponse a server sends, in bytes.
// A server packs deliveries into a response up to a byte budget below this size and sends
// a delivery larger than its budget alone; the largest delivery is a stored group
// delivery of up to 1 MiB + 4 KiB (an MLS Welcome at its 1 MiB maximum with its header)
// plus its message id and server time. A client sets the receive limit of its Receive
// call to this size (grpc.MaxCallRecvMsgSize), whatever limit its connection has for
// other calls: a smaller one would fail the stream on every reconnect at the same
// delivery, which then can never be acknowledged.
const MaxReceiveResponseSize = 1<<20 + 8<<10
