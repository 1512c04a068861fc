package model

import (
	"errors"
	"math"
	"testing"
)

const lbfgsTestN, lbfgsTestM = 12, 20

// rosenbrock is the harness's prob 0, operation for operation.
func rosenbrock(x, g []float64) (float64, error) {
	fx := 0.0
	for i := 0; i < len(x); i += 2 {
		t1 := 1.0 - x[i]
		t2 := float64(10.0 * (x[i+1] - float64(x[i]*x[i])))
		g[i+1] = float64(20.0 * t2)
		g[i] = float64(-2.0 * (float64(x[i]*g[i+1]) + t1))
		fx += float64(t1*t1) + float64(t2*t2)
	}
	return fx, nil
}

// quarticData is the harness's A and B, from the same LCG.
func quarticData() (a [lbfgsTestM][lbfgsTestN]float64, b [lbfgsTestM]float64) {
	s := uint32(12345)
	for i := 0; i < lbfgsTestM; i++ {
		for j := 0; j < lbfgsTestN; j++ {
			s = s*1103515245 + 12345
			a[i][j] = float64(int32((s>>16)%11)-5) / 4.0
		}
		s = s*1103515245 + 12345
		b[i] = float64(int32((s>>16)%21)-10) / 2.0
	}
	return a, b
}

// quartic is the harness's prob 1: ‖Ax − b‖² + 0.01·Σx⁴.
func quartic() func(x, g []float64) (float64, error) {
	a, b := quarticData()
	return func(x, g []float64) (float64, error) {
		fx := 0.0
		for j := range x {
			g[j] = float64(float64(float64(float64(4.0*x[j])*x[j])*x[j]) * 0.01)
		}
		for j := range x {
			fx += float64(float64(float64(float64(x[j]*x[j])*x[j])*x[j]) * 0.01)
		}
		for i := 0; i < lbfgsTestM; i++ {
			r := -b[i]
			for j := range x {
				r += float64(a[i][j] * x[j])
			}
			fx += float64(r * r)
			for j := range x {
				g[j] += float64(float64(2.0*r) * a[i][j])
			}
		}
		return fx, nil
	}
}

// shifted is the harness's prob 3: Σ ½w_j(x_j−5)² + 10⁻⁴(x_j−5)⁴ with
// w_j = 0.002(j+1)².
func shifted(x, g []float64) (float64, error) {
	fx := 0.0
	for j := range x {
		w := float64(float64((j+1)*(j+1)) * 0.002)
		d := x[j] - 5.0
		d2 := float64(d * d)
		g[j] = float64(w*d) + float64(float64(0.0004*d2)*d)
		fx += float64(float64(0.5*w)*d2) + float64(float64(0.0001*d2)*d2)
	}
	return fx, nil
}

func harnessParams() lbfgsParams {
	p := defaultLBFGSParams()
	p.maxIterations = 200
	return p
}

// TestLBFGSMatchesLiblbfgs replays the liblbfgs runs recorded in
// lbfgs_ref_test.go and wants every progress callback bit for bit.
func TestLBFGSMatchesLiblbfgs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		eval   func(x, g []float64) (float64, error)
		c      float64
		x0     func(x []float64)
		want   []lbfgsRef
		wantX  []float64
		status lbfgsStatus
	}{
		{"rosenbrock", rosenbrock, 0, func(x []float64) {
			for i := 0; i < len(x); i += 2 {
				x[i], x[i+1] = -1.2, 1
			}
		}, lbfgsRefRosenbrock, lbfgsRefRosenbrockX, lbfgsRefRosenbrockStatus},
		{"quartic", quartic(), 0, func([]float64) {}, lbfgsRefQuartic, lbfgsRefQuarticX, lbfgsRefQuarticStatus},
		{"quartic+L1", quartic(), 2, func([]float64) {}, lbfgsRefQuarticL1, lbfgsRefQuarticL1X, lbfgsRefQuarticL1Status},
		{"shifted", shifted, 0, func([]float64) {}, lbfgsRefShifted, lbfgsRefShiftedX, lbfgsRefShiftedStatus},
	} {
		x := make([]float64, lbfgsTestN)
		tc.x0(x)
		p := harnessParams()
		p.orthantwiseC = tc.c
		var got []lbfgsRef
		prob := lbfgsProblem{evaluate: tc.eval, progress: func(it *lbfgsIteration) error {
			got = append(got, lbfgsRef{it.k, it.ls, it.fx, it.xnorm, it.gnorm, it.step})
			return nil
		}}
		_, status, err := lbfgsMinimize(x, prob, p)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if status != tc.status {
			t.Errorf("%s: status %v, liblbfgs %v", tc.name, status, tc.status)
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: %d iterations, liblbfgs %d", tc.name, len(got), len(tc.want))
		}
		for i := range min(len(got), len(tc.want)) {
			g, w := got[i], tc.want[i]
			if g.k != w.k || g.ls != w.ls || !sameBits(g.fx, w.fx) || !sameBits(g.xnorm, w.xnorm) ||
				!sameBits(g.gnorm, w.gnorm) || !sameBits(g.step, w.step) {
				t.Errorf("%s: iteration %d: got %+v, liblbfgs %+v", tc.name, i+1, g, w)
				break
			}
		}
		for i := range x {
			if !sameBits(x[i], tc.wantX[i]) {
				t.Errorf("%s: x[%d] = %v, liblbfgs %v", tc.name, i, x[i], tc.wantX[i])
			}
		}
		t.Logf("%s: %d iterations, status %v, identical to liblbfgs", tc.name, len(got), status)
	}
}

func sameBits(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }

func TestLBFGSStops(t *testing.T) {
	x := make([]float64, lbfgsTestN)
	for i := 0; i < len(x); i += 2 {
		x[i], x[i+1] = -1.2, 1
	}
	p := harnessParams()
	p.maxIterations = 5
	n := 0
	_, status, err := lbfgsMinimize(x, lbfgsProblem{evaluate: rosenbrock, progress: func(*lbfgsIteration) error { n++; return nil }}, p)
	if err != nil || status != lbfgsMaxIterations || n != 5 {
		t.Errorf("max iterations: status %v, err %v after %d iterations", status, err, n)
	}

	// Already at the minimum.
	for i := range x {
		x[i] = 1
	}
	_, status, err = lbfgsMinimize(x, lbfgsProblem{evaluate: rosenbrock}, harnessParams())
	if err != nil || status != lbfgsAlreadyMinimized {
		t.Errorf("at the minimum: status %v, err %v", status, err)
	}

	// Errors from evaluate and progress abort and are returned as is.
	boom := errors.New("boom")
	calls := 0
	failing := func(x, g []float64) (float64, error) {
		if calls++; calls == 3 {
			return 0, boom
		}
		return rosenbrock(x, g)
	}
	x[0] = -1.2
	if _, _, err := lbfgsMinimize(x, lbfgsProblem{evaluate: failing}, harnessParams()); !errors.Is(err, boom) {
		t.Errorf("evaluate error: %v", err)
	}
	x[0] = -1.2
	if _, _, err := lbfgsMinimize(x, lbfgsProblem{evaluate: rosenbrock, progress: func(*lbfgsIteration) error { return boom }}, harnessParams()); !errors.Is(err, boom) {
		t.Errorf("progress error: %v", err)
	}

	// Invalid parameters.
	bad := harnessParams()
	bad.m = 0
	if _, _, err := lbfgsMinimize(x, lbfgsProblem{evaluate: rosenbrock}, bad); err == nil {
		t.Error("m = 0 accepted")
	}
}

// TestLBFGSLineSearchFailure makes the objective increase along every
// direction (a wrong gradient), so the line search fails: the point must be
// reverted and the failure reported as a status, not an error.
func TestLBFGSLineSearchFailure(t *testing.T) {
	wrong := func(x, g []float64) (float64, error) {
		f, _ := rosenbrock(x, g)
		for i := range g {
			g[i] = -g[i]
		}
		return f, nil
	}
	for _, c := range []float64{0, 1} {
		x := make([]float64, lbfgsTestN)
		for i := 0; i < len(x); i += 2 {
			x[i], x[i+1] = -1.2, 1
		}
		start := append([]float64(nil), x...)
		p := harnessParams()
		p.orthantwiseC = c
		_, status, err := lbfgsMinimize(x, lbfgsProblem{evaluate: wrong}, p)
		if err != nil || status < lbfgsErrMinimumStep {
			t.Errorf("c=%v: status %v, err %v; want a line-search failure", c, status, err)
		}
		for i := range x {
			if x[i] != start[i] {
				t.Errorf("c=%v: x not reverted: %v", c, x)
				break
			}
		}
		t.Logf("c=%v: %v", c, status)
	}
}
