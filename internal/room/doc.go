// Package room defines the grammar of room names and the rooms an event is
// routed to when its publisher names none.
//
// Rooms are values: everything here is safe for concurrent use.
package room
