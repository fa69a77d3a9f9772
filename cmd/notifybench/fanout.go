package main

import "context"

// runFanout: every subscriber in one room (--room), spread over --conns
// connections, while the publisher sends --rate events per second there.
func (b *bench) runFanout(ctx context.Context) (*Result, error) {
	o := b.opts
	rooms := make([]string, o.Subscribers)
	for i := range rooms {
		rooms[i] = o.Room
	}
	pub := []string{o.Room}
	return b.runDelivery(ctx, deliveryRun{
		mode:     "fanout",
		subRooms: rooms,
		pubRooms: pub,
		rooms:    func(int64) []string { return pub },
	})
}
