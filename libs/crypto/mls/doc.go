// Package mls implements Messaging Layer Security ([RFC 9420]) for Guardyn's
// group chats and call keys.
//
// The protocol is built bottom-up in internal packages: the TLS presentation
// codec (internal/tlscodec), the seven cipher suites and their labeled
// primitives (internal/suite), tree arithmetic (internal/treemath), the key
// schedule (internal/keysched) and the secret tree (internal/secrettree).
// Every layer is checked against the MLS working group's test vectors in
// testdata/; docs/crypto/mls.md lists which vector files pass today and what
// remains.
//
// [RFC 9420]: https://www.rfc-editor.org/rfc/rfc9420
package mls
