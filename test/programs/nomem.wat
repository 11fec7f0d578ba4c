;; A module without memory (and without imports): the runtime must cope with
;; programs that have no linear memory at all.
;;   spin: an infinite loop (for preemption, suspension and kill tests)
;;   ret:  returns immediately
(module
  (func (export "spin")
    (loop $forever
      (br $forever)))
  (func (export "ret")))
