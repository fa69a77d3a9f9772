package limit

import (
	"fmt"
	"sync"
)

// Streams limits the streams each user has open at once.
type Streams struct {
	max int

	mu   sync.Mutex
	open map[string]int
}

// NewStreams allows each user maxPerUser concurrent streams; maxPerUser <= 0
// disables the limit.
func NewStreams(maxPerUser int) *Streams {
	return &Streams{max: maxPerUser, open: make(map[string]int)}
}

// Acquire counts a stream of user, or refuses it with an *Error
// (ReasonTooManyStreams) when user already has the maximum open. The
// stream must call release when it ends; calling it again does nothing.
func (s *Streams) Acquire(user string) (release func(), err error) {
	if s.max <= 0 {
		return func() {}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[user] >= s.max {
		return nil, &Error{
			Reason: ReasonTooManyStreams,
			msg:    fmt.Sprintf("too many streams: at most %d per user", s.max),
		}
	}
	s.open[user]++
	var once sync.Once
	return func() { once.Do(func() { s.release(user) }) }, nil
}

func (s *Streams) release(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[user] <= 1 {
		delete(s.open, user)
		return
	}
	s.open[user]--
}

// Open returns the streams user has open.
func (s *Streams) Open(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open[user]
}
