// Package mls implements Messaging Layer Security ([RFC 9420]): group key
// agreement for Guardyn's group chats and call keys, in all seven cipher
// suites of the RFC and OpenMLS's post-quantum X-Wing suite 0x004D, which
// is [DefaultCipherSuite] for new groups.
//
// A client makes an [Identity] (a signature key and basic credential) and
// publishes [KeyPackage]s. Every constructor of a group that admits members
// ([NewGroup], [Join], [JoinExternal], [UnmarshalState]) takes the
// application's [CredentialValidator] and refuses nil: no group accepts
// credentials unchecked. One member creates a group with [NewGroup] and
// changes it with [Group.Commit] (add, remove, update its path, inject PSKs);
// others join with [Join] from the Welcome, or by external commit with
// [JoinExternal] from a [Group.GroupInfo]. Every member feeds each handshake
// and application message it receives to [Group.Process], sends with
// [Group.ProtectApplication] and the Propose methods ([Group.Propose] takes
// every standalone proposal), and derives keys for
// other protocols with [Group.Export] (a *Group satisfies the Group
// interface of package sframe/mlskeys). [Group.MarshalState] and
// [UnmarshalState] persist a member's state, secrets included. An external
// sender such as the delivery service proposes with
// [Identity.ProposeExternal]; [Group.SetTrustedExternalSenders] limits
// whom a member accepts as one.
//
// Commits follow the Delivery Service rule of one commit per epoch: Commit
// leaves the new state pending until [Group.MergePendingCommit] (the DS
// accepted it) or [Group.DiscardPendingCommit] (another commit won, which
// Process then applies). Application messages of the epoch just left still
// decrypt for a short window after each commit
// ([Group.SetPreviousEpochRetention]); handshake messages never do.
//
// Every validation RFC 9420 requires of the messages this package accepts
// returns a sentinel error testable with errors.Is; docs/crypto/mls.md lists
// them, the test vectors that pass, benchmark figures and known gaps.
//
// [RFC 9420]: https://www.rfc-editor.org/rfc/rfc9420
package mls
