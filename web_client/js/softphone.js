// The softphone behind the panel of the customer screen. This one is local: the agent dials
// on their own phone (the tel: link) and the panel keeps the call's timer. A server-side dial
// API replaces it by implementing the same interface:
//   call(phone)      start a call to `phone`
//   hangUp()         end the current call
//   reset()          forget the call (leaving the customer)
//   subscribe(fn)    fn({state: "idle"|"in_call"|"ended", phone, startedAt, endedAt})
//                    is called now and on every change; returns an unsubscribe function

export function createLocalSoftphone() {
  let call = { state: "idle", phone: null, startedAt: null, endedAt: null };
  const listeners = new Set();
  const emit = () => listeners.forEach((fn) => fn({ ...call }));

  return {
    kind: "local",
    call(phone) {
      if (call.state === "in_call") return;
      call = { state: "in_call", phone, startedAt: Date.now(), endedAt: null };
      emit();
    },
    hangUp() {
      if (call.state !== "in_call") return;
      call = { ...call, state: "ended", endedAt: Date.now() };
      emit();
    },
    reset() {
      call = { state: "idle", phone: null, startedAt: null, endedAt: null };
      emit();
    },
    get state() {
      return call.state;
    },
    subscribe(fn) {
      listeners.add(fn);
      fn({ ...call });
      return () => listeners.delete(fn);
    },
  };
}
