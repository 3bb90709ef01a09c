package sqlitequeue

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/jobfleet/jobfleet/pkg/queue"
)

// statements are the queue's SQL, prepared once per DB (database/sql then
// prepares each on a connection the first time it runs there), so that
// the hot paths do not parse SQL.
type statements struct {
	// anyVisible tells whether a queue has a visible message: the cheap
	// read a waiting receive polls. (queue, now)
	anyVisible *sql.Stmt
	// insertMessage and insertBody send. (id, queue, sent_at, visible_at)
	// → seq; (seq, body, attributes)
	insertMessage, insertBody *sql.Stmt
	// moveDead moves visible messages received MaxReceives times to the
	// dead-letter queue, among the limit oldest visible messages — the ones
	// the claim that follows looks at — so its cost does not grow with the
	// backlog. (dead-letter queue, now, queue, MaxReceives, limit)
	moveDead *sql.Stmt
	// claim receives. (now, visibility, queue, receive count below which a
	// message may be claimed, max) → seq, id, sent_at, receive_count, token
	claim *sql.Stmt
	// bodies reads up to MaxBatch bodies; unused parameters are 0, which
	// is no seq. (seq × MaxBatch) → seq, body, attributes
	bodies *sql.Stmt
	// current finds the message a receipt handle is the latest for.
	// (id, queue, token) → seq, received_at
	current *sql.Stmt
	// setVisible is (visible_at, seq).
	setVisible *sql.Stmt
	// deleteMessage deletes by receipt handle. (id, queue, token)
	deleteMessage *sql.Stmt
	// depth counts by state. (now, queue) → visible, in flight, delayed
	depth *sql.Stmt
}

func prepare(ctx context.Context, db *sql.DB) (*statements, error) {
	var err error
	p := func(query string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var s *sql.Stmt
		s, err = db.PrepareContext(ctx, query)
		return s
	}
	st := &statements{
		anyVisible:    p(`SELECT EXISTS (SELECT 1 FROM messages WHERE queue = ? AND visible_at <= ?)`),
		insertMessage: p(`INSERT INTO messages (id, queue, sent_at, visible_at) VALUES (?, ?, ?, ?) RETURNING seq`),
		insertBody:    p(`INSERT INTO bodies (seq, body, attributes) VALUES (?, ?, ?)`),
		moveDead: p(`
			UPDATE messages SET queue = ?1, visible_at = ?2, received_at = NULL, token = NULL
			WHERE seq IN (
				SELECT seq FROM (
					SELECT seq, receive_count FROM messages
					WHERE queue = ?3 AND visible_at <= ?2
					ORDER BY visible_at, seq LIMIT ?5)
				WHERE receive_count >= ?4)`),
		claim: p(`
			UPDATE messages SET
				visible_at = ?1 + ?2,
				receive_count = receive_count + 1,
				received_at = ?1,
				token = lower(hex(randomblob(16)))
			WHERE seq IN (
				SELECT seq FROM messages
				WHERE queue = ?3 AND visible_at <= ?1 AND receive_count < ?4
				ORDER BY visible_at, seq LIMIT ?5)
			RETURNING seq, id, sent_at, receive_count, token`),
		bodies: p(`SELECT seq, body, attributes FROM bodies WHERE seq IN (?` +
			strings.Repeat(", ?", queue.MaxBatch-1) + `) ORDER BY seq`),
		current:       p(`SELECT seq, received_at FROM messages WHERE id = ? AND queue = ? AND token = ?`),
		setVisible:    p(`UPDATE messages SET visible_at = ? WHERE seq = ?`),
		deleteMessage: p(`DELETE FROM messages WHERE id = ? AND queue = ? AND token = ?`),
		depth: p(`
			SELECT
				count(*) FILTER (WHERE visible_at <= ?1),
				count(*) FILTER (WHERE visible_at > ?1 AND receive_count > 0),
				count(*) FILTER (WHERE visible_at > ?1 AND receive_count = 0)
			FROM messages WHERE queue = ?2`),
	}
	if err != nil {
		st.close()
		return nil, err
	}
	return st, nil
}

func (st *statements) close() error {
	var errs []error
	for _, s := range []*sql.Stmt{st.anyVisible, st.insertMessage, st.insertBody, st.moveDead,
		st.claim, st.bodies, st.current, st.setVisible, st.deleteMessage, st.depth} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	return errors.Join(errs...)
}
