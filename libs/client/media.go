package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/guardyn/guardyn/libs/client/content"
	"github.com/guardyn/guardyn/libs/crypto/filecrypt"
	mediav1 "github.com/guardyn/guardyn/proto/guardyn/media/v1"
)

// File transfer (docs/crypto/files.md): SendFile encrypts a file under a fresh key into the
// profile's uploads directory, uploads the ciphertext in chunks, completes it with its
// hash, and sends the key, hash and a download capability in an end-to-end encrypted
// message. A killed SendFile resumes, on the next call for the same file and contact, from
// the server's committed offset. GetFile downloads in ranges, checks the hash and decrypts;
// OpenFile gives random access for players that seek.
const (
	// UploadChunk is the size of each uploaded chunk, the API's maximum.
	UploadChunk = 1 << 20
	// downloadRange is how much GetFile asks for per Download call.
	downloadRange = 8 << 20
	// capabilityTTL is how long a recipient can fetch a sent file: as long as the API
	// allows, since the message may wait that long in an inbox.
	capabilityTTL = 30 * 24 * time.Hour
	uploadsDir    = "uploads"
)

// ErrFileExists is returned by GetFile rather than overwrite a file.
var ErrFileExists = errors.New("client: file exists")

// pendingUpload is an upload SendFile started; it is saved in the vault (the key with it)
// until the file is sent.
type pendingUpload struct {
	Path     string    `json:"path"`
	Size     int64     `json:"size"`
	ModTime  time.Time `json:"mtime"`
	To       string    `json:"to"`
	Key      []byte    `json:"key"`
	UploadID string    `json:"upload_id"`
	// Cipher is the ciphertext file under the profile's uploads directory.
	Cipher     string `json:"cipher"`
	CipherSize int64  `json:"cipher_size"`
	SHA256     []byte `json:"sha256"`
}

// SentFile reports a sent file.
type SentFile struct {
	ID   content.ID
	File *content.File
	// ResumedAt is the ciphertext offset an earlier, interrupted SendFile had reached
	// (0 for a fresh upload).
	ResumedAt int64
}

// SendFile sends the file at path to username (and a copy to this account's other
// devices), or to every member of the group of that name: uploaded once, then one group
// message with a capability for each member account.
func (c *Client) SendFile(ctx context.Context, username, path string) (*SentFile, error) {
	group := c.IsGroup(username)
	if !group {
		username = strings.ToLower(username)
	}
	// A pending upload to a group is keyed apart from one to a contact of the same name.
	to := username
	if group {
		to = "#" + username
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("client: %s is not a regular file", path)
	}
	name := fi.Name()
	if !content.SafeFileName(name) {
		return nil, fmt.Errorf("client: cannot send a file named %q", name)
	}
	up, err := c.pendingFor(abs, fi, to)
	if err != nil {
		return nil, err
	}
	c.dropOrphans()
	if up == nil {
		if up, err = c.startUpload(ctx, abs, fi, to); err != nil {
			return nil, err
		}
	}
	sent := &SentFile{}
	audienceName := username
	if group {
		audienceName = ""
	}
	actx, audience, err := c.mediaContext(ctx, audienceName)
	if err != nil {
		return nil, err
	}
	st, err := c.media.GetUploadStatus(actx, &mediav1.GetUploadStatusRequest{UploadId: up.UploadID})
	if status.Code(err) == codes.NotFound {
		// Expired on the server: start again.
		c.dropUpload(up)
		if up, err = c.startUpload(ctx, abs, fi, to); err != nil {
			return nil, err
		}
		st, err = c.media.GetUploadStatus(actx, &mediav1.GetUploadStatusRequest{UploadId: up.UploadID})
	}
	if err != nil {
		return nil, fmt.Errorf("client: upload status: %w", err)
	}
	sent.ResumedAt = int64(st.GetCommittedOffset())
	if err := c.uploadFrom(actx, up, sent.ResumedAt); err != nil {
		return sent, err
	}
	done, err := c.media.CompleteUpload(actx, &mediav1.CompleteUploadRequest{UploadId: up.UploadID, Sha256: up.SHA256})
	if err != nil {
		return sent, fmt.Errorf("client: complete upload: %w", err)
	}
	if group {
		return sent, c.sendGroupFile(ctx, actx, username, up, done.GetBlobId(), name, sent)
	}
	capResp, err := c.media.CreateCapability(actx, &mediav1.CreateCapabilityRequest{BlobId: done.GetBlobId(), Ttl: durationpb.New(capabilityTTL), AudienceUserId: audience})
	if err != nil {
		return sent, fmt.Errorf("client: file capability: %w", err)
	}
	f := &content.File{Blob: done.GetBlobId(), Key: up.Key, SHA256: up.SHA256, Size: up.CipherSize, Name: name, Capability: capResp.GetCapability()}
	m := content.Message{ID: content.NewID(), Kind: content.KindFile, Sent: c.now(), File: f}
	sent.ID, sent.File = m.ID, f
	if err := c.sendTo(ctx, username, false, m); err != nil {
		return sent, err
	}
	c.dropUpload(up)
	m.To = username
	if err := c.sendTo(ctx, "", true, m); err != nil {
		return sent, fmt.Errorf("client: file sent to %s, but not copied to your other devices: %w", username, err)
	}
	return sent, nil
}

// sendGroupFile sends a completed upload to group name: one capability per member account
// but this one (whose devices read as the owner), so that a device added to the group
// later has none for its account, and a removed account cannot use another's.
func (c *Client) sendGroupFile(ctx, actx context.Context, name string, up *pendingUpload, blob, fileName string, sent *SentFile) error {
	var accounts []string
	err := c.cycle(func(s *state) error {
		_, g, err := s.loadGroup(name)
		if err != nil {
			return err
		}
		for d := range leafDevices(g) {
			if d.user != s.UserID && !slices.Contains(accounts, d.user) {
				accounts = append(accounts, d.user)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(accounts) > content.MaxGroupCapabilities {
		return fmt.Errorf("client: group %q has %d member accounts; a file goes to at most %d", name, len(accounts), content.MaxGroupCapabilities)
	}
	gf := &content.GroupFile{
		File:         &content.File{Blob: blob, Key: up.Key, SHA256: up.SHA256, Size: up.CipherSize, Name: fileName},
		Capabilities: make(map[string][]byte, len(accounts)),
	}
	for _, a := range accounts {
		resp, err := c.media.CreateCapability(actx, &mediav1.CreateCapabilityRequest{BlobId: blob, Ttl: durationpb.New(capabilityTTL), AudienceUserId: a})
		if err != nil {
			return fmt.Errorf("client: file capability: %w", err)
		}
		gf.Capabilities[a] = resp.GetCapability()
	}
	id := content.NewID()
	sent.ID, sent.File = id, gf.File
	if err := c.sendGroup(ctx, name, groupText{Kind: "file", ID: id.String(), Sent: c.now(), File: gf}); err != nil {
		return err
	}
	c.dropUpload(up)
	return nil
}

// mediaContext returns an authenticated context and the account id of username, the
// audience of the capability.
func (c *Client) mediaContext(ctx context.Context, username string) (context.Context, string, error) {
	var actx context.Context
	var audience string
	err := c.cycle(func(s *state) error {
		var err error
		if actx, err = c.bearer(ctx, s); err != nil {
			return err
		}
		if username == "" {
			return nil
		}
		if username == s.Username {
			return ErrSelf
		}
		ct, err := c.recipientDevices(ctx, s, username)
		if err != nil {
			return err
		}
		audience = ct.UserID
		return nil
	})
	return actx, audience, err
}

// pendingFor returns the saved upload of this very file to username, if its ciphertext
// is still there.
func (c *Client) pendingFor(abs string, fi os.FileInfo, username string) (*pendingUpload, error) {
	s, err := c.view()
	if err != nil {
		return nil, err
	}
	for _, u := range s.Uploads {
		if u.Path == abs && u.Size == fi.Size() && u.ModTime.Equal(fi.ModTime()) && u.To == username {
			if st, err := os.Stat(u.Cipher); err == nil && st.Size() == u.CipherSize {
				return u, nil
			}
		}
	}
	return nil, nil
}

// dropOrphans deletes ciphertext files in the uploads directory that no pending upload
// names: what a SendFile killed while encrypting left behind.
func (c *Client) dropOrphans() {
	s, err := c.view()
	if err != nil {
		return
	}
	dir := filepath.Join(c.home, uploadsDir)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if !slices.ContainsFunc(s.Uploads, func(u *pendingUpload) bool { return u.Cipher == p }) {
			os.Remove(p)
		}
	}
}

// startUpload encrypts the file under a fresh key, creates the upload and saves both in
// the vault before any byte is sent.
func (c *Client) startUpload(ctx context.Context, abs string, fi os.FileInfo, username string) (*pendingUpload, error) {
	key := filecrypt.GenerateKey()
	var rnd [8]byte
	rand.Read(rnd[:])
	dir := filepath.Join(c.home, uploadsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	up := &pendingUpload{Path: abs, Size: fi.Size(), ModTime: fi.ModTime(), To: username, Key: key.Bytes(),
		Cipher: filepath.Join(dir, hex.EncodeToString(rnd[:])+".gyf")}
	size, sum, err := encryptFile(abs, up.Cipher, key)
	if err != nil {
		return nil, err
	}
	up.CipherSize, up.SHA256 = size, sum
	actx, _, err := c.mediaContext(ctx, "")
	if err != nil {
		os.Remove(up.Cipher)
		return nil, err
	}
	resp, err := c.media.CreateUpload(actx, &mediav1.CreateUploadRequest{TotalSize: uint64(size), ChunkSize: UploadChunk})
	if err != nil {
		os.Remove(up.Cipher)
		return nil, fmt.Errorf("client: create upload: %w", err)
	}
	up.UploadID = resp.GetUploadId()
	if err := c.cycle(func(s *state) error {
		s.Uploads = append(s.Uploads, up)
		return nil
	}); err != nil {
		return nil, err
	}
	return up, nil
}

// encryptFile writes the ciphertext of src to dst, synced, and returns its size and hash.
func encryptFile(src, dst string, key *filecrypt.Key) (int64, []byte, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, nil, fmt.Errorf("client: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, nil, fmt.Errorf("client: %w", err)
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(out, h)}
	w, err := filecrypt.NewWriter(cw, key)
	if err == nil {
		_, err = io.Copy(w, in)
	}
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return 0, nil, fmt.Errorf("client: encrypt %s: %w", src, err)
	}
	return cw.n, h.Sum(nil), nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// uploadFrom sends the ciphertext from offset to its end: on one client stream, or with
// one UploadChunk call per chunk over a transport without request streams.
func (c *Client) uploadFrom(ctx context.Context, up *pendingUpload, offset int64) error {
	if offset >= up.CipherSize {
		return nil
	}
	f, err := os.Open(up.Cipher)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer f.Close()
	if c.unaryOnly {
		return c.uploadChunks(ctx, f, up, offset)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.media.UploadChunks(ctx)
	if err != nil {
		return fmt.Errorf("client: upload: %w", err)
	}
	buf := make([]byte, UploadChunk)
	for off := offset; off < up.CipherSize; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), up.CipherSize-off)], off)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("client: read %s: %w", up.Cipher, err)
		}
		if err := stream.Send(&mediav1.UploadChunksRequest{UploadId: up.UploadID, Offset: uint64(off), Data: buf[:n]}); err != nil {
			break // the server ended the stream: CloseAndRecv says why
		}
		off += int64(n)
		if c.afterChunk != nil {
			if err := c.afterChunk(up.UploadID, off); err != nil {
				return err
			}
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("client: upload: %w", err)
	}
	if int64(resp.GetCommittedOffset()) != up.CipherSize {
		return fmt.Errorf("client: upload: server committed %d of %d bytes", resp.GetCommittedOffset(), up.CipherSize)
	}
	return nil
}

// maxUploadRetries is how many chunk calls in a row may fail without the server's
// committed offset moving before uploadChunks gives up (a later SendFile resumes).
const maxUploadRetries = 3

// uploadChunks sends the ciphertext in f from offset to its end, one UploadChunk call per
// chunk. Each call returns once its chunk is durable, and says how far the upload is
// committed. When a call fails without a definite refusal (its answer was lost: the
// connection dropped, the server restarted or was busy, or it timed out), the chunk may or
// may not have been stored: GetUploadStatus says where the server is, and the upload goes
// on from there, so a chunk is never sent twice at the wrong offset nor skipped.
func (c *Client) uploadChunks(ctx context.Context, f *os.File, up *pendingUpload, off int64) error {
	buf := make([]byte, UploadChunk)
	failures := 0
	for off < up.CipherSize {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), up.CipherSize-off)], off)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("client: read %s: %w", up.Cipher, err)
		}
		resp, err := c.media.UploadChunk(ctx, &mediav1.UploadChunkRequest{UploadId: up.UploadID, Offset: uint64(off), Data: buf[:n]})
		if err != nil {
			if !answerLost(err) || ctx.Err() != nil {
				return fmt.Errorf("client: upload at offset %d: %w", off, err)
			}
			if failures++; failures > maxUploadRetries {
				return fmt.Errorf("client: upload at offset %d: %d attempts failed: %w", off, failures, err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("client: upload: %w", ctx.Err())
			case <-time.After(time.Duration(failures) * reconnectMin):
			}
			st, serr := c.media.GetUploadStatus(ctx, &mediav1.GetUploadStatusRequest{UploadId: up.UploadID})
			if serr != nil {
				return fmt.Errorf("client: upload at offset %d: %w; then upload status: %w", off, err, serr)
			}
			committed := int64(st.GetCommittedOffset())
			if committed < 0 || committed > up.CipherSize {
				return fmt.Errorf("client: upload: server says %d bytes of %d are committed", committed, up.CipherSize)
			}
			if committed > off {
				failures = 0 // the lost answer's chunk was stored
			}
			off = committed
			continue
		}
		committed := int64(resp.GetCommittedOffset())
		if committed != off+int64(n) {
			return fmt.Errorf("client: upload: server committed %d bytes after a chunk at %d of %d bytes", committed, off, n)
		}
		off, failures = committed, 0
		if c.afterChunk != nil {
			if err := c.afterChunk(up.UploadID, off); err != nil {
				return err
			}
		}
	}
	return nil
}

// answerLost reports whether a failed call may have been carried out all the same, its
// answer lost on the way: the connection broke or the server went away (UNAVAILABLE),
// timed out (DEADLINE_EXCEEDED), failed in a way that says nothing (UNKNOWN, what an HTTP
// transport reports for a cut response), or asked to slow down (RESOURCE_EXHAUSTED,
// retried after a pause). A chunk that does not start at the committed offset
// (OFFSET_MISMATCH) is the retry of one whose answer was lost.
func answerLost(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Unknown, codes.ResourceExhausted:
		return true
	case codes.FailedPrecondition:
		return Reason(err) == "OFFSET_MISMATCH"
	}
	return false
}

// dropUpload forgets a finished or abandoned upload and deletes its ciphertext.
func (c *Client) dropUpload(up *pendingUpload) {
	c.cycle(func(s *state) error {
		s.Uploads = slices.DeleteFunc(s.Uploads, func(u *pendingUpload) bool { return u.UploadID == up.UploadID })
		return nil
	})
	os.Remove(up.Cipher)
}

// FindFile returns the file of history entry id (a message id in hex).
func (c *Client) FindFile(id string) (*LogEntry, error) {
	hist, err := c.History("")
	if err != nil {
		return nil, err
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].ID == id && hist[i].File != nil {
			return &hist[i], nil
		}
	}
	return nil, fmt.Errorf("client: no file with message id %q in the history", id)
}

// remoteBlob reads a blob's ciphertext in ranges over Download.
type remoteBlob struct {
	c     *Client
	ctx   context.Context
	f     *content.File
	owner bool // read as the blob's owner (no capability)
}

func (r *remoteBlob) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.f.Size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), r.f.Size-off)
	var capability []byte
	if !r.owner {
		capability = r.f.Capability
	}
	stream, err := r.c.media.Download(r.ctx, &mediav1.DownloadRequest{BlobId: r.f.Blob, Offset: uint64(off), Length: uint64(n), Capability: capability})
	if err != nil {
		return 0, fmt.Errorf("client: download: %w", err)
	}
	got := 0
	for int64(got) < n {
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return got, fmt.Errorf("client: download: %w", err)
		}
		if resp.GetOffset() != uint64(off)+uint64(got) || int64(got+len(resp.GetData())) > n || int64(resp.GetTotalSize()) != r.f.Size {
			return got, errors.New("client: download: the server sent another range than asked for")
		}
		got += copy(p[got:], resp.GetData())
	}
	if n < int64(len(p)) {
		return got, io.EOF
	}
	return got, nil
}

// blob returns a reader of f's ciphertext; outgoing files (sent by this account) are read
// as their owner, since their capability names the recipient.
func (c *Client) blob(ctx context.Context, f *content.File, outgoing bool) (*remoteBlob, error) {
	actx, _, err := c.mediaContext(ctx, "")
	if err != nil {
		return nil, err
	}
	return &remoteBlob{c: c, ctx: actx, f: f, owner: outgoing}, nil
}

// OpenFile gives random access to the plaintext of a shared file, fetching and
// authenticating only the chunks a read covers (a player seeking). Reads fail with
// filecrypt.ErrAuthentication if the server changed any byte they cover.
func (c *Client) OpenFile(ctx context.Context, e *LogEntry) (*filecrypt.ReaderAt, error) {
	key, err := filecrypt.NewKey(e.File.Key)
	if err != nil {
		return nil, err
	}
	rb, err := c.blob(ctx, e.File, e.Outgoing)
	if err != nil {
		return nil, err
	}
	return filecrypt.NewReaderAt(rb, e.File.Size, key)
}

// GetFile downloads the file of history entry e in ranges, checks the ciphertext against
// the hash the sender signed into the message, decrypts it and saves it as dst (a path, or
// a directory to save it in under the sender's file name). It never overwrites a file, and
// leaves nothing at dst when any check fails.
func (c *Client) GetFile(ctx context.Context, e *LogEntry, dst string) (string, error) {
	f := e.File
	if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
		dst = filepath.Join(dst, f.Name)
	}
	if _, err := os.Lstat(dst); err == nil {
		return "", fmt.Errorf("%w: %s", ErrFileExists, dst)
	}
	key, err := filecrypt.NewKey(f.Key)
	if err != nil {
		return "", err
	}
	rb, err := c.blob(ctx, f, e.Outgoing)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(dst)
	ct, err := os.CreateTemp(dir, ".guardyn-download-*")
	if err != nil {
		return "", fmt.Errorf("client: %w", err)
	}
	defer os.Remove(ct.Name())
	defer ct.Close()
	h := sha256.New()
	if err := download(rb, io.MultiWriter(ct, h), f.Size); err != nil {
		return "", err
	}
	if !bytes.Equal(h.Sum(nil), f.SHA256) {
		return "", fmt.Errorf("client: %s: %w: the downloaded ciphertext does not match the hash in the message", f.Name, filecrypt.ErrAuthentication)
	}
	if _, err := ct.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("client: %w", err)
	}
	pt, err := os.CreateTemp(dir, ".guardyn-plain-*")
	if err != nil {
		return "", fmt.Errorf("client: %w", err)
	}
	defer os.Remove(pt.Name())
	defer pt.Close()
	r, err := filecrypt.NewReader(ct, key)
	if err == nil {
		_, err = io.Copy(pt, r)
	}
	if err == nil {
		err = pt.Sync()
	}
	if err != nil {
		return "", fmt.Errorf("client: decrypt %s: %w", f.Name, err)
	}
	// Link, not rename: it fails rather than replace a file created meanwhile.
	if err := os.Link(pt.Name(), dst); err != nil {
		return "", fmt.Errorf("client: save %s: %w", dst, err)
	}
	return dst, nil
}

// download copies size bytes of rb to w in ranges of downloadRange.
func download(rb *remoteBlob, w io.Writer, size int64) error {
	buf := make([]byte, min(downloadRange, size))
	for off := int64(0); off < size; {
		n, err := rb.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if err != nil && !(errors.Is(err, io.EOF) && off+int64(n) == size) {
			return err
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return fmt.Errorf("client: %w", err)
		}
		off += int64(n)
	}
	return nil
}
