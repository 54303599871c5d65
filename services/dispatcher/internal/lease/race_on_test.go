//go:build race

package lease

// raceDetector: the race detector slows the gRPC hot path about tenfold, so
// throughput tests move fewer leases under it.
const raceDetector = true
