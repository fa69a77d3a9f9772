package main

import (
	"context"
	"strconv"
)

// personalRooms returns n rooms <prefix><i>, for example guest:nbx1y2-7.
func personalRooms(prefix string, n int) []string {
	rooms := make([]string, n)
	for i := range rooms {
		rooms[i] = prefix + strconv.Itoa(i)
	}
	return rooms
}

// runPersonal: --subscribers rooms with one subscriber each; the publisher
// sends --rate events per second, each to the next room in turn.
func (b *bench) runPersonal(ctx context.Context) (*Result, error) {
	rooms := personalRooms(b.opts.RoomPrefix, b.opts.Subscribers)
	one := make([][]string, len(rooms))
	for i, r := range rooms {
		one[i] = []string{r}
	}
	return b.runDelivery(ctx, deliveryRun{
		mode:     "personal",
		subRooms: rooms,
		pubRooms: rooms,
		rooms:    func(i int64) []string { return one[i%int64(len(one))] },
	})
}
