package model

import (
	"fmt"
	"math"
)

// This file is a port of liblbfgs 1.10 (lbfgs.c, ANSI arithmetic), the
// optimiser CRFsuite 0.12 trains with: L-BFGS with More–Thuente's line search
// when there is no L1 term, OWL-QN with its backtracking line search when
// there is. It is ported statement by statement, with the same loop orders
// and the same grouping of every sum and product, because the reference logs
// we compare against (loss, norms and active features at 6 decimals over 100
// iterations) are only reproducible if the rounding is the same. Products are
// wrapped in float64(…) so that the compiler never fuses them into FMAs,
// which the reference build does not do either.

// lbfgsParams are the fields of liblbfgs's lbfgs_parameter_t.
type lbfgsParams struct {
	m             int     // number of corrections kept (num_memories)
	epsilon       float64 // ‖g‖/max(1,‖x‖) convergence threshold
	past          int     // period of the delta test (0 disables it)
	delta         float64 // relative decrease over `past` iterations
	maxIterations int     // 0 = unlimited
	maxLinesearch int
	minStep       float64
	maxStep       float64
	ftol          float64
	wolfe         float64 // unused by the two line searches CRFsuite selects; kept for parity
	gtol          float64
	xtol          float64
	orthantwiseC  float64 // L1 coefficient; non-zero selects OWL-QN
}

// defaultLBFGSParams are liblbfgs's _defparam with the values CRFsuite's
// train_lbfgs.c overrides (max_linesearch 20).
func defaultLBFGSParams() lbfgsParams {
	return lbfgsParams{
		m:             6,
		epsilon:       1e-5,
		past:          10,
		delta:         1e-5,
		maxIterations: 0,
		maxLinesearch: 20,
		minStep:       1e-20,
		maxStep:       1e20,
		ftol:          1e-4,
		wolfe:         0.9,
		gtol:          0.9,
		xtol:          1e-16,
	}
}

// lbfgsStatus is liblbfgs's return code, reduced to the cases that can occur.
type lbfgsStatus int

const (
	lbfgsSuccess lbfgsStatus = iota
	lbfgsStop
	lbfgsAlreadyMinimized
	lbfgsMaxIterations
	lbfgsErrMinimumStep
	lbfgsErrMaximumStep
	lbfgsErrMaximumLinesearch
	lbfgsErrIncreaseGradient
	lbfgsErrRoundingError
	lbfgsErrWidthTooSmall
	lbfgsErrInvalidParameters
	lbfgsErrOutOfInterval
	lbfgsErrIncorrectTMinMax
)

// String names the status the way Meta.Extra["stop_reason"] records it.
func (s lbfgsStatus) String() string {
	switch s {
	case lbfgsSuccess:
		return "converged"
	case lbfgsStop:
		return "delta"
	case lbfgsAlreadyMinimized:
		return "already_minimized"
	case lbfgsMaxIterations:
		return "max_iterations"
	case lbfgsErrMinimumStep:
		return "linesearch_minimum_step"
	case lbfgsErrMaximumStep:
		return "linesearch_maximum_step"
	case lbfgsErrMaximumLinesearch:
		return "linesearch_max_trials"
	case lbfgsErrIncreaseGradient:
		return "linesearch_increase_gradient"
	case lbfgsErrRoundingError:
		return "linesearch_rounding_error"
	case lbfgsErrWidthTooSmall:
		return "linesearch_width_too_small"
	case lbfgsErrInvalidParameters:
		return "linesearch_invalid_parameters"
	case lbfgsErrOutOfInterval:
		return "linesearch_out_of_interval"
	case lbfgsErrIncorrectTMinMax:
		return "linesearch_incorrect_tminmax"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// lbfgsIteration is what the progress callback sees after each iteration,
// the arguments of liblbfgs's lbfgs_progress_t.
type lbfgsIteration struct {
	x, g         []float64 // current point and gradient (of the smooth part)
	fx           float64   // objective, including the L1 term under OWL-QN
	xnorm, gnorm float64   // ‖x‖ and ‖g‖ (‖pseudo-gradient‖ under OWL-QN)
	step         float64
	k            int // iteration number, from 1
	ls           int // evaluations made by this iteration's line search
}

// lbfgsProblem is the function to minimise. evaluate writes ∇f(x) into g and
// returns f(x); an error (cancellation) aborts the optimisation. progress, if
// set, is called after every iteration; an error stops the optimisation.
type lbfgsProblem struct {
	evaluate func(x, g []float64) (float64, error)
	progress func(it *lbfgsIteration) error
}

type lbfgsCorrection struct {
	alpha float64
	s, y  []float64
	ys    float64
}

// lbfgsWorkspace holds every vector the optimiser needs, allocated once so
// that the iteration loop does not allocate.
type lbfgsWorkspace struct {
	xp, g, gp, pg, d, w []float64
	lm                  []lbfgsCorrection
	pf                  []float64
}

func newLBFGSWorkspace(n int, p lbfgsParams) *lbfgsWorkspace {
	ws := &lbfgsWorkspace{
		xp: make([]float64, n),
		g:  make([]float64, n),
		gp: make([]float64, n),
		d:  make([]float64, n),
		w:  make([]float64, n),
		lm: make([]lbfgsCorrection, p.m),
	}
	if p.orthantwiseC != 0 {
		ws.pg = make([]float64, n)
	}
	for i := range ws.lm {
		ws.lm[i].s = make([]float64, n)
		ws.lm[i].y = make([]float64, n)
	}
	if p.past > 0 {
		ws.pf = make([]float64, p.past)
	}
	return ws
}

// lbfgsMinimize minimises prob starting from x, which it updates in place,
// and returns the final objective value and liblbfgs's status. Failures of
// the line search are statuses, not errors (CRFsuite treats them as the end
// of training); x is then the last accepted point. The error is non-nil only
// when evaluate or progress returned one.
func lbfgsMinimize(x []float64, prob lbfgsProblem, p lbfgsParams) (float64, lbfgsStatus, error) {
	n := len(x)
	if n == 0 {
		return 0, lbfgsErrInvalidParameters, fmt.Errorf("lbfgs: no variables")
	}
	if p.m <= 0 || p.epsilon < 0 || p.past < 0 || p.delta < 0 || p.minStep < 0 ||
		p.maxStep < p.minStep || p.ftol < 0 || p.gtol < 0 || p.xtol < 0 ||
		p.maxLinesearch <= 0 || p.orthantwiseC < 0 {
		return 0, lbfgsErrInvalidParameters, fmt.Errorf("lbfgs: invalid parameters %+v", p)
	}
	ws := newLBFGSWorkspace(n, p)
	xp, g, gp, pg, d, w := ws.xp, ws.g, ws.gp, ws.pg, ws.d, ws.w
	lm, pf := ws.lm, ws.pf
	m := p.m
	owlqn := p.orthantwiseC != 0
	c := p.orthantwiseC

	// Evaluate the function value and its gradient.
	fx, err := prob.evaluate(x, g)
	if err != nil {
		return fx, lbfgsErrInvalidParameters, err
	}
	var xnorm, gnorm float64
	if owlqn {
		// Add the L1 norm of the variables to the objective.
		xnorm = owlqnX1Norm(x)
		fx += float64(xnorm * c)
		owlqnPseudoGradient(pg, x, g, c)
	}
	if pf != nil {
		pf[0] = fx
	}

	// The initial direction assumes H_0 = I.
	if !owlqn {
		vecNCopy(d, g)
	} else {
		vecNCopy(d, pg)
	}

	// Make sure the initial point is not already a minimiser.
	xnorm = vecNorm(x)
	if !owlqn {
		gnorm = vecNorm(g)
	} else {
		gnorm = vecNorm(pg)
	}
	if xnorm < 1.0 {
		xnorm = 1.0
	}
	if gnorm/xnorm <= p.epsilon {
		return fx, lbfgsAlreadyMinimized, nil
	}

	// The initial step is 1/‖d‖.
	step := 1.0 / vecNorm(d)

	var it lbfgsIteration
	k := 1
	end := 0
	for {
		copy(xp, x)
		copy(gp, g)

		var ls int
		var status lbfgsStatus
		if !owlqn {
			ls, status, err = lineSearchMoreThuente(x, &fx, g, d, &step, xp, gp, w, prob.evaluate, &p)
		} else {
			ls, status, err = lineSearchBacktrackingOWLQN(x, &fx, g, d, &step, xp, pg, w, prob.evaluate, &p)
			owlqnPseudoGradient(pg, x, g, c)
		}
		if err != nil {
			return fx, status, err
		}
		if ls < 0 {
			// Revert to the previous point.
			copy(x, xp)
			copy(g, gp)
			return fx, status, nil
		}

		xnorm = vecNorm(x)
		if !owlqn {
			gnorm = vecNorm(g)
		} else {
			gnorm = vecNorm(pg)
		}

		if prob.progress != nil {
			it = lbfgsIteration{x: x, g: g, fx: fx, xnorm: xnorm, gnorm: gnorm, step: step, k: k, ls: ls}
			if err := prob.progress(&it); err != nil {
				return fx, lbfgsSuccess, err
			}
		}

		// Convergence test: ‖g‖ / max(1, ‖x‖) ≤ ε.
		if xnorm < 1.0 {
			xnorm = 1.0
		}
		if gnorm/xnorm <= p.epsilon {
			return fx, lbfgsSuccess, nil
		}

		// Stopping criterion: (f(past x) − f(x)) / f(x) < δ.
		if pf != nil {
			if p.past <= k {
				rate := (pf[k%p.past] - fx) / fx
				if rate < p.delta {
					return fx, lbfgsStop, nil
				}
			}
			pf[k%p.past] = fx
		}

		if p.maxIterations != 0 && p.maxIterations < k+1 {
			return fx, lbfgsMaxIterations, nil
		}

		// s_{k+1} = x_{k+1} − x_k, y_{k+1} = g_{k+1} − g_k.
		cur := &lm[end]
		vecDiff(cur.s, x, xp)
		vecDiff(cur.y, g, gp)
		ys := vecDot(cur.y, cur.s)
		yy := vecDot(cur.y, cur.y)
		cur.ys = ys

		// Two-loop recursion for d = −H·g (Nocedal 1980, p. 779).
		bound := k
		if m <= k {
			bound = m
		}
		k++
		end = (end + 1) % m

		if !owlqn {
			vecNCopy(d, g)
		} else {
			vecNCopy(d, pg)
		}
		j := end
		for i := 0; i < bound; i++ {
			j = (j + m - 1) % m
			cj := &lm[j]
			cj.alpha = vecDot(cj.s, d)
			cj.alpha /= cj.ys
			vecAdd(d, cj.y, -cj.alpha)
		}
		vecScale(d, ys/yy)
		for i := 0; i < bound; i++ {
			cj := &lm[j]
			beta := vecDot(cj.y, d)
			beta /= cj.ys
			vecAdd(d, cj.s, cj.alpha-beta)
			j = (j + 1) % m
		}

		// Constrain the direction to the orthant of the pseudo-gradient.
		if owlqn {
			for i := range d {
				if float64(d[i]*pg[i]) >= 0 {
					d[i] = 0
				}
			}
		}

		step = 1.0
	}
}

// lineSearchBacktrackingOWLQN is line_search_backtracking_owlqn: halve the
// step until the projected point satisfies the sufficient-decrease test.
// gp is the pseudo-gradient at xp; wp is scratch for the chosen orthant.
func lineSearchBacktrackingOWLQN(x []float64, f *float64, g, s []float64, stp *float64,
	xp, gp, wp []float64, eval func(x, g []float64) (float64, error), p *lbfgsParams) (int, lbfgsStatus, error) {
	count := 0
	const width = 0.5
	finit := *f

	if *stp <= 0 {
		return -1, lbfgsErrInvalidParameters, nil
	}

	// Choose the orthant for the new point.
	for i := range wp {
		if xp[i] == 0 {
			wp[i] = -gp[i]
		} else {
			wp[i] = xp[i]
		}
	}

	for {
		copy(x, xp)
		vecAdd(x, s, *stp)

		// Project the point onto the orthant.
		for i := range x {
			if float64(x[i]*wp[i]) <= 0 {
				x[i] = 0
			}
		}

		fv, err := eval(x, g)
		if err != nil {
			return -1, lbfgsSuccess, err
		}
		norm := owlqnX1Norm(x)
		*f = fv + float64(norm*p.orthantwiseC)

		count++

		dgtest := 0.0
		for i := range x {
			dgtest += float64((x[i] - xp[i]) * gp[i])
		}

		if *f <= finit+float64(p.ftol*dgtest) {
			// Sufficient decrease.
			return count, lbfgsSuccess, nil
		}
		if *stp < p.minStep {
			return -1, lbfgsErrMinimumStep, nil
		}
		if *stp > p.maxStep {
			return -1, lbfgsErrMaximumStep, nil
		}
		if p.maxLinesearch <= count {
			return -1, lbfgsErrMaximumLinesearch, nil
		}
		*stp *= width
	}
}

// lineSearchMoreThuente is line_search_morethuente (More and Thuente 1994,
// after MINPACK-2's dcsrch), used when there is no L1 term.
func lineSearchMoreThuente(x []float64, f *float64, g, s []float64, stp *float64,
	xp, gp, wa []float64, eval func(x, g []float64) (float64, error), p *lbfgsParams) (int, lbfgsStatus, error) {
	_ = gp
	_ = wa
	count := 0
	uinfo := lbfgsSuccess

	if *stp <= 0 {
		return -1, lbfgsErrInvalidParameters, nil
	}

	// The initial gradient in the search direction.
	dginit := vecDot(g, s)
	if 0 < dginit {
		return -1, lbfgsErrIncreaseGradient, nil
	}

	brackt := false
	stage1 := true
	finit := *f
	dgtest := float64(p.ftol * dginit)
	width := p.maxStep - p.minStep
	prevWidth := float64(2.0 * width)

	// (stx, fx, dgx): the best step so far; (sty, fy, dgy): the other end
	// of the interval of uncertainty; (stp, f, dg): the current step.
	stx, sty := 0.0, 0.0
	fx, fy := finit, finit
	dgx, dgy := dginit, dginit

	var stmin, stmax float64
	for {
		// The interval of uncertainty bounds the step.
		if brackt {
			stmin = min2(stx, sty)
			stmax = max2(stx, sty)
		} else {
			stmin = stx
			stmax = *stp + float64(4.0*(*stp-stx))
		}

		// Clip the step to [min_step, max_step].
		if *stp < p.minStep {
			*stp = p.minStep
		}
		if p.maxStep < *stp {
			*stp = p.maxStep
		}

		// On an unusual termination, let stp be the best point so far.
		if (brackt && ((*stp <= stmin || stmax <= *stp) || p.maxLinesearch <= count+1 || uinfo != lbfgsSuccess)) ||
			(brackt && (stmax-stmin <= float64(p.xtol*stmax))) {
			*stp = stx
		}

		copy(x, xp)
		vecAdd(x, s, *stp)

		fv, err := eval(x, g)
		if err != nil {
			return -1, lbfgsSuccess, err
		}
		*f = fv
		dg := vecDot(g, s)

		ftest1 := finit + float64(*stp*dgtest)
		count++

		// Tests for errors and convergence.
		if brackt && ((*stp <= stmin || stmax <= *stp) || uinfo != lbfgsSuccess) {
			return -1, lbfgsErrRoundingError, nil
		}
		if *stp == p.maxStep && *f <= ftest1 && dg <= dgtest {
			return -1, lbfgsErrMaximumStep, nil
		}
		if *stp == p.minStep && (ftest1 < *f || dgtest <= dg) {
			return -1, lbfgsErrMinimumStep, nil
		}
		if brackt && (stmax-stmin) <= float64(p.xtol*stmax) {
			return -1, lbfgsErrWidthTooSmall, nil
		}
		if p.maxLinesearch <= count {
			return -1, lbfgsErrMaximumLinesearch, nil
		}
		if *f <= ftest1 && math.Abs(dg) <= float64(p.gtol*(-dginit)) {
			// Sufficient decrease and curvature conditions hold.
			return count, lbfgsSuccess, nil
		}

		// In the first stage, seek a step where the modified function has a
		// non-positive value and a non-negative derivative.
		if stage1 && *f <= ftest1 && float64(min2(p.ftol, p.gtol)*dginit) <= dg {
			stage1 = false
		}

		if stage1 && ftest1 < *f && *f <= fx {
			// Use the modified function to predict the step.
			fm := *f - float64(*stp*dgtest)
			fxm := fx - float64(stx*dgtest)
			fym := fy - float64(sty*dgtest)
			dgm := dg - dgtest
			dgxm := dgx - dgtest
			dgym := dgy - dgtest

			uinfo = updateTrialInterval(&stx, &fxm, &dgxm, &sty, &fym, &dgym, stp, &fm, &dgm, stmin, stmax, &brackt)

			fx = fxm + float64(stx*dgtest)
			fy = fym + float64(sty*dgtest)
			dgx = dgxm + dgtest
			dgy = dgym + dgtest
		} else {
			fcur := *f
			uinfo = updateTrialInterval(&stx, &fx, &dgx, &sty, &fy, &dgy, stp, &fcur, &dg, stmin, stmax, &brackt)
			*f = fcur
		}

		// Force a sufficient decrease in the size of the interval.
		if brackt {
			if float64(0.66*prevWidth) <= math.Abs(sty-stx) {
				*stp = stx + float64(0.5*(sty-stx))
			}
			prevWidth = width
			width = math.Abs(sty - stx)
		}
	}
}

func min2(a, b float64) float64 {
	if a <= b {
		return a
	}
	return b
}

func max2(a, b float64) float64 {
	if a >= b {
		return a
	}
	return b
}

// cubicMinimizer is liblbfgs's CUBIC_MINIMIZER macro.
func cubicMinimizer(u, fu, du, v, fv, dv float64) float64 {
	d := v - u
	theta := float64(float64((fu-fv)*3)/d) + du + dv
	p := math.Abs(theta)
	q := math.Abs(du)
	r := math.Abs(dv)
	s := max2(max2(p, q), r)
	a := theta / s
	gamma := float64(s * math.Sqrt(float64(a*a)-float64((du/s)*(dv/s))))
	if v < u {
		gamma = -gamma
	}
	p = gamma - du + theta
	q = gamma - du + gamma + dv
	r = p / q
	return u + float64(r*d)
}

// cubicMinimizer2 is liblbfgs's CUBIC_MINIMIZER2 macro.
func cubicMinimizer2(u, fu, du, v, fv, dv, xmin, xmax float64) float64 {
	d := v - u
	theta := float64(float64((fu-fv)*3)/d) + du + dv
	p := math.Abs(theta)
	q := math.Abs(du)
	r := math.Abs(dv)
	s := max2(max2(p, q), r)
	a := theta / s
	gamma := float64(s * math.Sqrt(max2(0, float64(a*a)-float64((du/s)*(dv/s)))))
	if u < v {
		gamma = -gamma
	}
	p = gamma - dv + theta
	q = gamma - dv + gamma + du
	r = p / q
	switch {
	case r < 0 && gamma != 0:
		return v - float64(r*d)
	case a < 0:
		return xmax
	default:
		return xmin
	}
}

// quardMinimizer is liblbfgs's QUARD_MINIMIZER macro.
func quardMinimizer(u, fu, du, v, fv float64) float64 {
	a := v - u
	return u + float64(float64(du/(float64((fu-fv)/a)+du))/2*a)
}

// quardMinimizer2 is liblbfgs's QUARD_MINIMIZER2 macro.
func quardMinimizer2(u, du, v, dv float64) float64 {
	a := u - v
	return v + float64(dv/(dv-du)*a)
}

// fsigndiff is liblbfgs's non-IEEE fsigndiff: x·(y/|y|) < 0.
func fsigndiff(x, y float64) bool { return float64(x*(y/math.Abs(y))) < 0 }

// updateTrialInterval is update_trial_interval: it updates the interval of
// uncertainty [x, y] with the trial step t and picks the next trial step.
func updateTrialInterval(x, fx, dx, y, fy, dy, t, ft, dt *float64, tmin, tmax float64, brackt *bool) lbfgsStatus {
	dsign := fsigndiff(*dt, *dx)
	var mc, mq, newt float64
	var bound bool

	if *brackt {
		if *t <= min2(*x, *y) || max2(*x, *y) <= *t {
			return lbfgsErrOutOfInterval
		}
		if 0 <= float64(*dx*(*t-*x)) {
			return lbfgsErrIncreaseGradient
		}
		if tmax < tmin {
			return lbfgsErrIncorrectTMinMax
		}
	}

	switch {
	case *fx < *ft:
		// Case 1: a higher function value; the minimum is bracketed.
		*brackt = true
		bound = true
		mc = cubicMinimizer(*x, *fx, *dx, *t, *ft, *dt)
		mq = quardMinimizer(*x, *fx, *dx, *t, *ft)
		if math.Abs(mc-*x) < math.Abs(mq-*x) {
			newt = mc
		} else {
			newt = mc + float64(0.5*(mq-mc))
		}
	case dsign:
		// Case 2: a lower function value and derivatives of opposite sign.
		*brackt = true
		bound = false
		mc = cubicMinimizer(*x, *fx, *dx, *t, *ft, *dt)
		mq = quardMinimizer2(*x, *dx, *t, *dt)
		if math.Abs(mc-*t) > math.Abs(mq-*t) {
			newt = mc
		} else {
			newt = mq
		}
	case math.Abs(*dt) < math.Abs(*dx):
		// Case 3: a lower function value, derivatives of the same sign,
		// and the magnitude of the derivative decreases.
		bound = true
		mc = cubicMinimizer2(*x, *fx, *dx, *t, *ft, *dt, tmin, tmax)
		mq = quardMinimizer2(*x, *dx, *t, *dt)
		if *brackt {
			if math.Abs(*t-mc) < math.Abs(*t-mq) {
				newt = mc
			} else {
				newt = mq
			}
		} else {
			if math.Abs(*t-mc) > math.Abs(*t-mq) {
				newt = mc
			} else {
				newt = mq
			}
		}
	default:
		// Case 4: a lower function value, derivatives of the same sign,
		// and the magnitude of the derivative does not decrease.
		bound = false
		switch {
		case *brackt:
			newt = cubicMinimizer(*t, *ft, *dt, *y, *fy, *dy)
		case *x < *t:
			newt = tmax
		default:
			newt = tmin
		}
	}

	// Update the interval of uncertainty.
	if *fx < *ft {
		*y, *fy, *dy = *t, *ft, *dt
	} else {
		if dsign {
			*y, *fy, *dy = *x, *fx, *dx
		}
		*x, *fx, *dx = *t, *ft, *dt
	}

	// Clip the new trial value to [tmin, tmax].
	if tmax < newt {
		newt = tmax
	}
	if newt < tmin {
		newt = tmin
	}

	// Keep the new trial value away from the far end of the interval.
	if *brackt && bound {
		mq = *x + float64(0.66*(*y-*x))
		if *x < *y {
			if mq < newt {
				newt = mq
			}
		} else {
			if newt < mq {
				newt = mq
			}
		}
	}

	*t = newt
	return lbfgsSuccess
}

// owlqnX1Norm is ‖x‖₁, summed in index order.
func owlqnX1Norm(x []float64) float64 {
	norm := 0.0
	for _, v := range x {
		norm += math.Abs(v)
	}
	return norm
}

// owlqnPseudoGradient is the pseudo-gradient of f + c‖x‖₁ (Andrew and Gao
// 2007): the one-sided derivative that points downhill, or 0 at a kink where
// neither side does.
func owlqnPseudoGradient(pg, x, g []float64, c float64) {
	for i := range x {
		switch {
		case x[i] < 0:
			pg[i] = g[i] - c
		case 0 < x[i]:
			pg[i] = g[i] + c
		case g[i] < -c:
			pg[i] = g[i] + c // right partial derivative
		case c < g[i]:
			pg[i] = g[i] - c // left partial derivative
		default:
			pg[i] = 0
		}
	}
}

// Vector helpers, the ANSI versions of liblbfgs's arithmetic_ansi.h.

func vecNCopy(y, x []float64) {
	for i := range y {
		y[i] = -x[i]
	}
}

// vecAdd is y += c·x.
func vecAdd(y, x []float64, c float64) {
	x = x[:len(y)]
	for i := range y {
		y[i] += float64(c * x[i])
	}
}

// vecDiff is z = x − y.
func vecDiff(z, x, y []float64) {
	x = x[:len(z)]
	y = y[:len(z)]
	for i := range z {
		z[i] = x[i] - y[i]
	}
}

func vecScale(y []float64, c float64) {
	for i := range y {
		y[i] *= c
	}
}

func vecDot(x, y []float64) float64 {
	y = y[:len(x)]
	s := 0.0
	for i := range x {
		s += float64(x[i] * y[i])
	}
	return s
}

func vecNorm(x []float64) float64 { return math.Sqrt(vecDot(x, x)) }
