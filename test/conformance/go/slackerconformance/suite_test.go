package slackerconformance

import (
	"testing"

	"github.com/docker/docker/daemon/graphdriver/graphtest"
)

// The list moby runs against its own overlay2 driver (overlay2/overlay_test.go),
// with the quota test made mandatory: slacker enforces StorageOpt size, so a
// driver that stops enforcing it must fail here, not skip.
//
// graphtest shares one driver between the tests of a run: TestSetup takes it
// (Init) and TestTeardown gives it back (Cleanup). A test selected alone with
// -run, and every benchmark round, takes and releases a driver of its own.

func TestSetup(t *testing.T)            { graphtest.GetDriver(t, driverName) }
func TestCreateEmpty(t *testing.T)      { graphtest.DriverTestCreateEmpty(t, driverName) }
func TestCreateBase(t *testing.T)       { graphtest.DriverTestCreateBase(t, driverName) }
func TestCreateSnap(t *testing.T)       { graphtest.DriverTestCreateSnap(t, driverName) }
func Test128LayerRead(t *testing.T)     { graphtest.DriverTestDeepLayerRead(t, 128, driverName) }
func TestDiffApply10Files(t *testing.T) { graphtest.DriverTestDiffApply(t, 10, driverName) }
func TestChanges(t *testing.T)          { graphtest.DriverTestChanges(t, driverName) }
func TestSetQuota(t *testing.T)         { graphtest.DriverTestSetQuota(t, driverName, true) }
func TestTeardown(t *testing.T)         { graphtest.PutDriver(t) }

func BenchmarkExists(b *testing.B)             { graphtest.DriverBenchExists(b, driverName) }
func BenchmarkGetEmpty(b *testing.B)           { graphtest.DriverBenchGetEmpty(b, driverName) }
func BenchmarkDiffBase(b *testing.B)           { graphtest.DriverBenchDiffBase(b, driverName) }
func BenchmarkDiffSmallUpper(b *testing.B)     { graphtest.DriverBenchDiffN(b, 10, 10, driverName) }
func BenchmarkDiff10KFileUpper(b *testing.B)   { graphtest.DriverBenchDiffN(b, 10, 10000, driverName) }
func BenchmarkDiff10KFilesBottom(b *testing.B) { graphtest.DriverBenchDiffN(b, 10000, 10, driverName) }
func BenchmarkDiffApply100(b *testing.B)       { graphtest.DriverBenchDiffApplyN(b, 100, driverName) }
func BenchmarkDiff20Layers(b *testing.B)       { graphtest.DriverBenchDeepLayerDiff(b, 20, driverName) }
func BenchmarkRead20Layers(b *testing.B)       { graphtest.DriverBenchDeepLayerRead(b, 20, driverName) }
