/// Where the bars of a linear barcode probably are: the largest patch of the image whose
/// brightness changes strongly across one direction and little along the other. Used to crop
/// around the code for another decoding attempt and to find the printed line under it for OCR.
public struct BarRegion: Sendable, Equatable {
    /// The bars' bounding box in the image's pixels.
    public var rect: PixelRect
    /// True when the bars stand upright (the code reads left to right); false when it lies on its side.
    public var upright: Bool

    /// The most likely region in `image`, nil when nothing looks like bars.
    public static func find(in image: GrayImage) -> BarRegion? {
        // Work on a small copy: cells of 8×8 pixels of a ≤ 480 px image.
        let small = image.fitting(longSide: 480)
        let scale = Double(image.width) / Double(small.width)
        let cell = 8
        let (columns, rows) = (small.width / cell, small.height / cell)
        guard columns >= 3, rows >= 3 else { return nil }
        var across = [Int](repeating: 0, count: columns * rows)  // change across x (upright bars)
        var along = [Int](repeating: 0, count: columns * rows)  // change across y (bars on their side)
        small.pixels.withUnsafeBufferPointer { pixels in
            for y in 0..<(rows * cell - 1) {
                for x in 0..<(columns * cell - 1) {
                    let here = Int(pixels[y * small.width + x])
                    let gx = abs(Int(pixels[y * small.width + x + 1]) - here)
                    let gy = abs(Int(pixels[(y + 1) * small.width + x]) - here)
                    let index = (y / cell) * columns + x / cell
                    across[index] += gx
                    along[index] += gy
                }
            }
        }
        let uprightScore = zip(across, along).map { max(0, $0 - 2 * $1) }
        let sideScore = zip(across, along).map { max(0, $1 - 2 * $0) }
        let upright = merged(components(uprightScore, columns: columns, rows: rows), upright: true)
        let side = merged(components(sideScore, columns: columns, rows: rows), upright: false)
        guard let best = [upright.map { ($0, true) }, side.map { ($0, false) }].compactMap({ $0 }).max(by: { $0.0.cells < $1.0.cells }) else {
            return nil
        }
        let box = best.0
        let rect = PixelRect(
            x: Int(Double(box.minX * cell) * scale), y: Int(Double(box.minY * cell) * scale),
            width: Int(Double((box.maxX - box.minX + 1) * cell) * scale), height: Int(Double((box.maxY - box.minY + 1) * cell) * scale))
        return BarRegion(rect: rect, upright: best.1)
    }

    struct Component { var cells: Int; var minX: Int; var minY: Int; var maxX: Int; var maxY: Int }

    /// The largest component, grown by the others in line with it: bars split by a sticker or a
    /// glare spot are one code, and the printed line runs under all of it.
    static func merged(_ components: [Component], upright: Bool) -> Component? {
        guard var best = components.max(by: { $0.cells < $1.cells }) else { return nil }
        for other in components where other.cells * 6 >= best.cells {
            // In line: their spans across the bars overlap by half the smaller one; near: a gap of at most three times the longer one (a sticker
            // can hide more of the bars than it leaves).
            let (a0, a1, b0, b1) = upright ? (best.minY, best.maxY, other.minY, other.maxY) : (best.minX, best.maxX, other.minX, other.maxX)
            let overlap = min(a1, b1) - max(a0, b0) + 1
            let (c0, c1, d0, d1) = upright ? (best.minX, best.maxX, other.minX, other.maxX) : (best.minY, best.maxY, other.minY, other.maxY)
            let gap = max(d0 - c1, c0 - d1)
            if overlap * 2 >= min(a1 - a0 + 1, b1 - b0 + 1), gap <= 3 * max(c1 - c0 + 1, d1 - d0 + 1) {
                best.cells += other.cells
                best.minX = min(best.minX, other.minX)
                best.maxX = max(best.maxX, other.maxX)
                best.minY = min(best.minY, other.minY)
                best.maxY = max(best.maxY, other.maxY)
            }
        }
        return best
    }

    /// The 8-connected groups of cells scoring at least a third of the best cell (and clearly
    /// above flat paper), of at least 4 cells each.
    static func components(_ score: [Int], columns: Int, rows: Int) -> [Component] {
        guard let top = score.max(), top > 8 * 8 * 24 else { return [] }
        let threshold = top / 3
        var seen = [Bool](repeating: false, count: score.count)
        var found: [Component] = []
        for start in score.indices where score[start] >= threshold && !seen[start] {
            var component = Component(cells: 0, minX: columns, minY: rows, maxX: 0, maxY: 0)
            var stack = [start]
            seen[start] = true
            while let index = stack.popLast() {
                let (x, y) = (index % columns, index / columns)
                component.cells += 1
                component.minX = min(component.minX, x)
                component.maxX = max(component.maxX, x)
                component.minY = min(component.minY, y)
                component.maxY = max(component.maxY, y)
                for dy in -1...1 {
                    for dx in -1...1 where dx != 0 || dy != 0 {
                        let (nx, ny) = (x + dx, y + dy)
                        guard nx >= 0, ny >= 0, nx < columns, ny < rows else { continue }
                        let next = ny * columns + nx
                        if !seen[next] && score[next] >= threshold {
                            seen[next] = true
                            stack.append(next)
                        }
                    }
                }
            }
            if component.cells >= 4 { found.append(component) }
        }
        return found
    }
}
