package platform_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/guardyn/guardyn/libs/client/grpcweb"
	mediav1 "github.com/guardyn/guardyn/proto/guardyn/media/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

// subscriber reads a device's Subscribe stream over gRPC-Web in the background, as a browser.
type subscriber struct {
	deliveries chan *messagingv1.Delivery
	backlog    chan struct{}
	errs       chan error
	cancel     context.CancelFunc
}

func (e *webEnv) subscribe(t *testing.T, d *device) *subscriber {
	t.Helper()
	ctx, cancel := context.WithCancel(d.Context(context.Background()))
	t.Cleanup(cancel)
	stream, err := e.webMsg.Subscribe(ctx, &messagingv1.SubscribeRequest{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &subscriber{deliveries: make(chan *messagingv1.Delivery, 1000), backlog: make(chan struct{}), errs: make(chan error, 1), cancel: cancel}
	go func() {
		done := false
		for {
			resp, err := stream.Recv()
			if err != nil {
				s.errs <- err
				return
			}
			for _, d := range resp.GetDeliveries() {
				s.deliveries <- d
			}
			if resp.GetBacklogComplete() && !done {
				done = true
				close(s.backlog)
			}
		}
	}()
	return s
}

func (s *subscriber) next(t *testing.T) *messagingv1.Delivery {
	t.Helper()
	select {
	case d := <-s.deliveries:
		return d
	case err := <-s.errs:
		t.Fatalf("stream ended: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no delivery within 20s")
	}
	return nil
}

func (s *subscriber) none(t *testing.T, wait time.Duration) {
	t.Helper()
	select {
	case d := <-s.deliveries:
		t.Fatalf("unexpected delivery of %d bytes", len(d.GetPayload()))
	case err := <-s.errs:
		t.Fatalf("stream ended: %v", err)
	case <-time.After(wait):
	}
}

// A browser receives as Receive does, over HTTP/1.1: the backlog in order, its end, live
// deliveries, acknowledgements by AckMessages that delete, and whatever it did not
// acknowledge again on its next stream.
func TestWebSubscribe(t *testing.T) {
	e := startWeb(t, func(*platform.Config) {})
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	for i := range 3 {
		if _, err := e.send(t, alice, bob, fmt.Appendf(nil, "offline %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	s := e.subscribe(t, bob)
	var ids [][]byte
	for i := range 3 {
		d := s.next(t)
		if want := fmt.Sprintf("offline %d", i); string(d.GetPayload()) != want {
			t.Fatalf("backlog %d = %q, want %q", i, d.GetPayload(), want)
		}
		ids = append(ids, d.GetMessageId())
	}
	select {
	case <-s.backlog:
	case <-time.After(20 * time.Second):
		t.Fatal("backlog_complete never came")
	}
	if _, err := e.send(t, alice, bob, []byte("live")); err != nil {
		t.Fatal(err)
	}
	if d := s.next(t); string(d.GetPayload()) != "live" {
		t.Fatalf("live delivery = %q", d.GetPayload())
	}
	// Acknowledge the backlog only, over the web as well.
	if _, err := e.webMsg.AckMessages(bob.ctx(t), &messagingv1.AckMessagesRequest{MessageIds: ids}); err != nil {
		t.Fatal(err)
	}
	s.cancel()
	s2 := e.subscribe(t, bob)
	if d := s2.next(t); string(d.GetPayload()) != "live" {
		t.Fatalf("after reconnecting: %q, want the unacknowledged live message only", d.GetPayload())
	}
	select {
	case <-s2.backlog:
	case d := <-s2.deliveries:
		t.Fatalf("acknowledged message delivered again: %q", d.GetPayload())
	case <-time.After(20 * time.Second):
		t.Fatal("backlog_complete never came")
	}

	// One stream per device, whichever kind: a native Receive supersedes the browser's.
	r := e.receive(t, bob)
	select {
	case err := <-s2.errs:
		wantErr(t, err, codes.Aborted, "STREAM_SUPERSEDED")
	case <-time.After(20 * time.Second):
		t.Fatal("the Subscribe stream outlived a newer Receive stream")
	}
	r.next(t)
}

// Subscribe holds a device to Receive's byte window: a stream that acknowledges nothing
// gets no more than the first window, and acknowledgements by AckMessages open it.
func TestWebSubscribeWindow(t *testing.T) {
	e := startWeb(t, func(*platform.Config) {})
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	const size = 200 << 10 // two do not fit the first window of 256 KiB
	for i := range 3 {
		if _, err := e.send(t, alice, bob, bytes.Repeat([]byte{byte('a' + i)}, size)); err != nil {
			t.Fatal(err)
		}
	}
	s := e.subscribe(t, bob)
	first := s.next(t)
	s.none(t, time.Second)
	if _, err := e.webMsg.AckMessages(bob.ctx(t), &messagingv1.AckMessagesRequest{MessageIds: [][]byte{first.GetMessageId()}}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 3; i++ {
		if d := s.next(t); d.GetPayload()[0] != byte('a'+i) {
			t.Fatalf("after the ack, delivery %d starts with %q", i, d.GetPayload()[:1])
		}
	}
}

// A browser uploads with one unary call per chunk: each must start at the committed
// offset and be within the upload's sizes, and a refused chunk changes nothing.
func TestWebUploadChunk(t *testing.T) {
	e := startWeb(t, func(*platform.Config) {})
	alice := e.register(t, "alice")
	md := mediav1.NewMediaServiceClient(grpcweb.New(nil, e.base, grpcweb.GRPCWeb))
	ctx := alice.ctx(t)
	body := bytes.Repeat([]byte("ciphertext"), 300) // 3000 bytes in chunks of 1024
	up := must(md.CreateUpload(ctx, &mediav1.CreateUploadRequest{TotalSize: uint64(len(body)), ChunkSize: 1024}))
	id := up.GetUploadId()
	committed := func() uint64 {
		return must(md.GetUploadStatus(ctx, &mediav1.GetUploadStatusRequest{UploadId: id})).GetCommittedOffset()
	}
	chunk := func(off int, data []byte) (*mediav1.UploadChunkResponse, error) {
		return md.UploadChunk(ctx, &mediav1.UploadChunkRequest{UploadId: id, Offset: uint64(off), Data: data})
	}

	resp, err := chunk(0, body[:1024])
	if err != nil || resp.GetCommittedOffset() != 1024 {
		t.Fatalf("first chunk: %v, %v", resp, err)
	}
	for _, bad := range []struct {
		name   string
		off    int
		data   []byte
		code   codes.Code
		reason string
	}{
		{"a retried chunk", 0, body[:1024], codes.FailedPrecondition, "OFFSET_MISMATCH"},
		{"a gap", 2048, body[2048:], codes.FailedPrecondition, "OFFSET_MISMATCH"},
		{"over the chunk size", 1024, body[1024:2049], codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"empty", 1024, nil, codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"past the total", 2990, body[:20], codes.InvalidArgument, "UPLOAD_TOO_LARGE"},
		{"over the field limit", 1024, make([]byte, 1<<20+1), codes.InvalidArgument, "LIMIT_EXCEEDED"},
	} {
		_, err := chunk(bad.off, bad.data)
		wantErr(t, err, bad.code, bad.reason)
		if c := committed(); c != 1024 {
			t.Fatalf("after %s: committed %d, want 1024", bad.name, c)
		}
	}
	_, err = md.UploadChunk(ctx, &mediav1.UploadChunkRequest{UploadId: "no-such-upload", Data: []byte("x")})
	wantErr(t, err, codes.NotFound, "UPLOAD_NOT_FOUND")

	for off := 1024; off < len(body); off += 1024 {
		if _, err := chunk(off, body[off:min(off+1024, len(body))]); err != nil {
			t.Fatalf("chunk at %d: %v", off, err)
		}
	}
	sum := sha256.Sum256(body)
	blob := must(md.CompleteUpload(ctx, &mediav1.CompleteUploadRequest{UploadId: id, Sha256: sum[:]})).GetBlobId()
	_, err = chunk(len(body)-1, body[:1])
	wantErr(t, err, codes.FailedPrecondition, "UPLOAD_COMPLETED")

	// Downloads are server streams, which browsers can read as they are.
	dl := must(md.Download(ctx, &mediav1.DownloadRequest{BlobId: blob}))
	var got []byte
	for {
		part, err := dl.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, part.GetData()...)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("downloaded %d bytes, want the %d uploaded", len(got), len(body))
	}
}

// What browsers cannot use is refused with a clear error, and garbage is refused without
// touching anything: a bidirectional stream over HTTP/1.1, a request that does not decode, a
// frame whose length lies, a request of an unknown method.
func TestWebBadInput(t *testing.T) {
	e := startWeb(t, func(*platform.Config) {})
	bob := e.register(t, "bob")
	ctx := bob.ctx(t)

	// The generated client's bidi stream, asked of a browser transport, fails before sending.
	if _, err := e.webMsg.Receive(ctx); err == nil || !bytes.Contains([]byte(err.Error()), []byte("cannot")) {
		t.Errorf("Receive over the web client: %v, want a refusal", err)
	}
	// Raw: the bidi method over HTTP/1.1 is refused by the server.
	resp := rawWeb(t, http.MethodPost, e.base+messagingv1.MessagingService_Receive_FullMethodName, webFrame(t, &messagingv1.ReceiveRequest{}),
		map[string]string{"Content-Type": "application/grpc-web+proto", "Authorization": "Bearer " + bob.Tokens.GetAccessToken()})
	if resp.StatusCode != http.StatusHTTPVersionNotSupported {
		t.Errorf("bidi Receive over HTTP/1.1: HTTP %d, want 505", resp.StatusCode)
	}

	send := messagingv1.MessagingService_SendMessage_FullMethodName
	want := map[string]codes.Code{
		"garbage message":                     codes.Internal, // grpc-go: "error unmarshalling request"
		"length lies":                         codes.Internal,
		"truncated frame":                     codes.Internal,
		"compressed flag without an encoding": codes.Internal,
	}
	for name, body := range map[string][]byte{
		"garbage message":                     {0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff},
		"length lies":                         {0, 0, 0, 1, 0, 1, 2, 3},
		"truncated frame":                     {0, 0, 0},
		"compressed flag without an encoding": {1, 0, 0, 0, 1, 0},
	} {
		resp, out := rawWebBody(t, http.MethodPost, e.base+send, body, map[string]string{
			"Content-Type": "application/grpc-web+proto", "Authorization": "Bearer " + bob.Tokens.GetAccessToken(),
		})
		if code := webStatus(t, resp, out); resp.StatusCode != http.StatusOK || code != want[name] {
			t.Errorf("%s: HTTP %d, grpc-status %v; want 200 with %v", name, resp.StatusCode, code, want[name])
		}
	}
	resp = rawWeb(t, http.MethodPost, e.base+"/guardyn.messaging.v1.MessagingService/NoSuchMethod", webFrame(t, &messagingv1.AckMessagesRequest{}),
		map[string]string{"Content-Type": "application/grpc-web+proto"})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown method: HTTP %d, want 404", resp.StatusCode)
	}
	// Nothing was stored for bob by any of it.
	s := e.subscribe(t, bob)
	select {
	case <-s.backlog:
	case d := <-s.deliveries:
		t.Fatalf("bad input stored a delivery: %q", d.GetPayload())
	case <-time.After(20 * time.Second):
		t.Fatal("backlog_complete never came")
	}
}

// rawWebBody is rawWeb that keeps the response body.
func rawWebBody(t *testing.T, method, url string, body []byte, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req := must(http.NewRequest(method, url, bytes.NewReader(body)))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp := must(http.DefaultClient.Do(req))
	defer resp.Body.Close()
	return resp, must(io.ReadAll(resp.Body))
}

// webStatus is the grpc-status of a gRPC-Web response: in its headers (trailers-only) or
// in the trailer frame (flag 0x80) that ends its body.
func webStatus(t *testing.T, resp *http.Response, body []byte) codes.Code {
	t.Helper()
	if st := resp.Header.Get("Grpc-Status"); st != "" {
		return codes.Code(must(strconv.Atoi(st)))
	}
	for len(body) >= 5 {
		n := int(binary.BigEndian.Uint32(body[1:5]))
		if len(body) < 5+n {
			break
		}
		if body[0]&0x80 != 0 {
			for line := range strings.SplitSeq(string(body[5:5+n]), "\r\n") {
				if v, ok := strings.CutPrefix(strings.ToLower(line), "grpc-status:"); ok {
					return codes.Code(must(strconv.Atoi(strings.TrimSpace(v))))
				}
			}
		}
		body = body[5+n:]
	}
	t.Fatalf("no grpc-status in the response (HTTP %d)", resp.StatusCode)
	return 0
}
