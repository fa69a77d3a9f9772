// Package access decides who may subscribe to and publish in which room,
// and which rooms a stream gets when it names none.
//
// It holds no state; everything is safe for concurrent use.
package access
