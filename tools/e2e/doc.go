// Package e2e holds the end-to-end tests of the Guardyn chat walkthrough (issue 6): real
// clients and the real guardyn CLI against a whole platform running in the test process,
// over gRPC on loopback. The walkthrough is docs/cli.md; the tests are in e2e_test.go and
// cli_test.go.
package e2e
