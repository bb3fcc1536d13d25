package queue

import (
	"context"
	"errors"
	"fmt"
)

// Action is an administrator's action on one message; its value is the word the admin API, the CLI and the
// console use for it.
type Action string

// The actions, each implemented by the Queue method of the same name.
const (
	ActionRetry   Action = "retry"
	ActionHold    Action = "hold"
	ActionRelease Action = "release"
	ActionBounce  Action = "bounce"
	ActionDelete  Action = "delete"
)

// ErrUnknownAction is wrapped by ParseAction's error.
var ErrUnknownAction = errors.New("queue: unknown action")

// Actions lists every action in the order they are offered.
func Actions() []Action {
	return []Action{ActionRetry, ActionHold, ActionRelease, ActionBounce, ActionDelete}
}

// ParseAction returns the action named s.
func ParseAction(s string) (Action, error) {
	for _, a := range Actions() {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("%w %q (want retry, hold, release, bounce or delete)", ErrUnknownAction, s)
}

// Verb is the action's name for a button or a heading.
func (a Action) Verb() string {
	switch a {
	case ActionRetry:
		return "Retry"
	case ActionHold:
		return "Hold"
	case ActionRelease:
		return "Release"
	case ActionBounce:
		return "Bounce"
	case ActionDelete:
		return "Delete"
	}
	return string(a)
}

// Explain says what the action does to a message, as the methods implementing it do it.
func (a Action) Explain() string {
	switch a {
	case ActionRetry:
		return "Every queued recipient becomes due now; the scheduler delivers at once."
	case ActionHold:
		return "No further delivery is attempted until the message is released; a delivery in progress finishes."
	case ActionRelease:
		return "Held messages go back to the queue and are delivered when due."
	case ActionBounce:
		return "Every recipient not yet delivered fails now with 5.0.0, and the sender gets a bounce (DSN) as its NOTIFY asks."
	case ActionDelete:
		return "The message, its body and its history are removed without notifying anyone. Recipients not yet delivered will never get it."
	}
	return ""
}

// Effect is what an action would do to one message, as Preview answers it.
type Effect struct {
	// Rcpts is how many recipients the action changes.
	Rcpts int
	// Skip, when not "", says why the action changes nothing for this message.
	Skip string
}

// Preview says what the action would do to message m (as Get or List returned it) without doing it.
func (a Action) Preview(m MessageInfo) Effect {
	var e Effect
	switch a {
	case ActionRetry:
		// Retry makes queued recipients due; a held message stays held.
		e.Rcpts = m.Queued
		if m.Queued == 0 {
			e.Skip = "no queued recipient"
		} else if m.Held {
			e.Skip = "held: release it to deliver"
		}
	case ActionHold:
		e.Rcpts = m.Queued
		if m.Held {
			e.Skip = "already held"
		}
	case ActionRelease:
		e.Rcpts = m.Queued
		if !m.Held {
			e.Skip = "not held"
		}
	case ActionBounce:
		// Bounce fails queued and quarantined recipients alike.
		e.Rcpts = m.Queued + m.Quarantined
		if e.Rcpts == 0 {
			e.Skip = "no recipient left to bounce"
		}
	case ActionDelete:
		e.Rcpts = m.Queued + m.Quarantined
	default:
		e.Skip = fmt.Sprintf("unknown action %q", string(a))
	}
	return e
}

// Actioner carries out actions; *Queue implements it.
type Actioner interface {
	Retry(ctx context.Context, id string) error
	Hold(ctx context.Context, id string) error
	Release(ctx context.Context, id string) error
	Bounce(ctx context.Context, id string) error
	Delete(ctx context.Context, id string) error
}

// Do carries out the action on message id with q's method of the same name.
func (a Action) Do(ctx context.Context, q Actioner, id string) error {
	switch a {
	case ActionRetry:
		return q.Retry(ctx, id)
	case ActionHold:
		return q.Hold(ctx, id)
	case ActionRelease:
		return q.Release(ctx, id)
	case ActionBounce:
		return q.Bounce(ctx, id)
	case ActionDelete:
		return q.Delete(ctx, id)
	}
	return fmt.Errorf("%w %q", ErrUnknownAction, string(a))
}
