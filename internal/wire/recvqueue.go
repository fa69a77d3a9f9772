package wire

// The request messages of a client-streaming call, queued for its
// handler.

import (
	"context"
	"encoding/binary"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// recvQueue holds the messages of a client-streaming call until its handler
// reads them. The stream's window bounds it: the window is given back as
// the handler reads.
type recvQueue struct {
	mu    sync.Mutex
	ready chan struct{} // signalled when a message arrives or the queue closes
	buf   []byte        // received bytes not yet split into messages
	msgs  [][]byte
	done  bool
	err   error // a message over the limit: the handler's next RecvMsg fails with it
}

func newRecvQueue() *recvQueue { return &recvQueue{ready: make(chan struct{}, 1)} }

// add takes received bytes and queues the whole messages among them; it
// reports whether any whole message waits.
func (q *recvQueue) add(b []byte, max int) (waiting bool, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return false, q.err
	}
	q.buf = append(q.buf, b...)
	for len(q.buf) >= 5 {
		n := binary.BigEndian.Uint32(q.buf[1:5])
		if int64(n) > int64(max) {
			q.err = status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", n, max)
			q.buf = nil
			q.signal()
			return false, q.err
		}
		if uint64(len(q.buf)-5) < uint64(n) {
			break
		}
		msg := append([]byte(nil), q.buf[:5+n]...)
		q.buf = q.buf[5+n:]
		q.msgs = append(q.msgs, msg)
	}
	q.signal()
	return len(q.msgs) > 0, nil
}

// signal wakes a handler waiting in next.
func (q *recvQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *recvQueue) close() {
	q.mu.Lock()
	q.done = true
	q.mu.Unlock()
	q.signal()
}

// next returns the next message, and whether it was the last one
// waiting; io.EOF after the last one.
func (q *recvQueue) next(ctx context.Context) ([]byte, bool, error) {
	for {
		q.mu.Lock()
		if len(q.msgs) > 0 {
			m := q.msgs[0]
			q.msgs[0] = nil
			q.msgs = q.msgs[1:]
			empty := len(q.msgs) == 0
			q.mu.Unlock()
			return m, empty, nil
		}
		done, err := q.done, q.err
		q.mu.Unlock()
		if err != nil {
			return nil, false, err
		}
		if done {
			if err := ctx.Err(); err != nil {
				return nil, false, status.FromContextError(err).Err()
			}
			return nil, false, io.EOF
		}
		select {
		case <-q.ready:
		case <-ctx.Done():
			return nil, false, status.FromContextError(ctx.Err()).Err()
		}
	}
}
