package sqlitequeue

import "time"

// SetWaitHook makes every receive on db call fn(queue) each time it starts
// waiting. Call it before the DB is in use.
func SetWaitHook(db *DB, fn func(queue string)) { db.hookWaiting = fn }

// SetPoll sets the interval bounds of db's waiting receives' polls. Call it
// before the DB is in use.
func SetPoll(db *DB, lo, hi time.Duration) { db.pollMin, db.pollMax = lo, hi }
