package mls

// pendingCommit is a commit this member sent and has not merged yet.
type pendingCommit struct {
	next *Group
}
