/**
 * The coordinator's phases as an explicit state machine. One transition
 * function says which moves are legal; anything else is a bug and throws.
 *
 *   starting ──ramp──▶ ramping ──hold──▶ holding ──close──▶ closing ──finish──▶ done
 *       │                 │                                    ▲
 *       │                 └──────────────close─────────────────┤
 *       └──────────────────────────────close───────────────────┘
 *
 * `close` from starting (a signal before the first worker ran, or a failed
 * start) and from ramping (no hold asked, or a signal) both lead to
 * closing: every path ends by closing what it opened.
 */

/** Where a run is. */
export type Phase = 'starting' | 'ramping' | 'holding' | 'closing' | 'done';

/** What moves a run from one phase to the next. */
export type PhaseEvent = 'ramp' | 'hold' | 'close' | 'finish';

const MOVES: Readonly<Record<Phase, Partial<Record<PhaseEvent, Phase>>>> = {
  starting: { ramp: 'ramping', close: 'closing' },
  ramping: { hold: 'holding', close: 'closing' },
  holding: { close: 'closing' },
  closing: { finish: 'done' },
  done: {},
};

/** An illegal move: the coordinator asked for a transition its phase does not allow. */
export class PhaseError extends Error {
  constructor(
    readonly from: Phase,
    readonly event: PhaseEvent,
  ) {
    super(`illegal transition '${event}' from phase '${from}'`);
  }
}

/** The phase `event` leads to from `from`; throws PhaseError for an illegal move. */
export function transition(from: Phase, event: PhaseEvent): Phase {
  const to = MOVES[from][event];
  if (to === undefined) throw new PhaseError(from, event);
  return to;
}

/** Whether `event` is legal in `from`. */
export function canTransition(from: Phase, event: PhaseEvent): boolean {
  return MOVES[from][event] !== undefined;
}
