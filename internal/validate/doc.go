// Package validate checks every field of every event of the contract in one
// place: ids bounded in length and alphabet, points non-negative where the
// domain says so, required enums set to a known value, strings bounded,
// timestamps sane. Errors name the field's path, e.g.
// "points_added.amount: must be positive".
//
// It holds no state; everything is safe for concurrent use.
package validate
