// Package crashtest holds the crash test of the CQL message store, TestKillAndRestart:
// it starts a Cassandra of its own, kills it under load and starts it again, which takes
// minutes, so it lives apart from the store's suites and has its own test timeout.
package crashtest
