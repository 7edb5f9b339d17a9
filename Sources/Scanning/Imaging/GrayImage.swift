/// An 8-bit grayscale image, one byte per pixel, rows top to bottom without padding: what every
/// decoder and the OCR take. The operations are the preprocessing steps of the pipeline; each
/// returns a new image.
public struct GrayImage: Sendable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width > 0 && height > 0 && pixels.count == width * height, "pixel buffer does not match the size")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    public init(width: Int, height: Int, fill: UInt8 = 255) {
        self.init(width: width, height: height, pixels: [UInt8](repeating: fill, count: width * height))
    }

    public subscript(x: Int, y: Int) -> UInt8 { pixels[y * width + x] }

    /// EXIF orientation (1–8) applied, so that the image stands as the camera's user saw it.
    public func oriented(_ orientation: Int) -> GrayImage {
        switch orientation {
        case 2: return remapped(width: width, height: height) { x, y in (width - 1 - x, y) }
        case 3: return remapped(width: width, height: height) { x, y in (width - 1 - x, height - 1 - y) }
        case 4: return remapped(width: width, height: height) { x, y in (x, height - 1 - y) }
        case 5: return remapped(width: height, height: width) { x, y in (y, x) }
        case 6: return remapped(width: height, height: width) { x, y in (y, height - 1 - x) }
        case 7: return remapped(width: height, height: width) { x, y in (width - 1 - y, height - 1 - x) }
        case 8: return remapped(width: height, height: width) { x, y in (width - 1 - y, x) }
        default: return self
        }
    }

    /// Turned a quarter clockwise.
    public func rotatedQuarter() -> GrayImage { oriented(6) }

    /// Each output pixel (x, y) takes the source pixel `source(x, y)`.
    private func remapped(width newWidth: Int, height newHeight: Int, _ source: (Int, Int) -> (Int, Int)) -> GrayImage {
        var out = [UInt8](repeating: 0, count: newWidth * newHeight)
        pixels.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { output in
                for y in 0..<newHeight {
                    for x in 0..<newWidth {
                        let (sx, sy) = source(x, y)
                        output[y * newWidth + x] = input[sy * width + sx]
                    }
                }
            }
        }
        return GrayImage(width: newWidth, height: newHeight, pixels: out)
    }

    /// Resized by `factor`: an area average when shrinking (no aliasing of thin bars), bilinear
    /// when growing.
    public func scaled(by factor: Double) -> GrayImage {
        let newWidth = max(1, Int((Double(width) * factor).rounded()))
        let newHeight = max(1, Int((Double(height) * factor).rounded()))
        if newWidth == width && newHeight == height { return self }
        var out = [UInt8](repeating: 0, count: newWidth * newHeight)
        let (sx, sy) = (Double(width) / Double(newWidth), Double(height) / Double(newHeight))
        pixels.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { output in
                if factor < 1 {
                    for y in 0..<newHeight {
                        let y0 = Int(Double(y) * sy), y1 = max(y0 + 1, min(height, Int(Double(y + 1) * sy)))
                        for x in 0..<newWidth {
                            let x0 = Int(Double(x) * sx), x1 = max(x0 + 1, min(width, Int(Double(x + 1) * sx)))
                            var sum = 0
                            for row in y0..<y1 {
                                let base = row * width
                                for column in x0..<x1 { sum += Int(input[base + column]) }
                            }
                            output[y * newWidth + x] = UInt8(sum / ((y1 - y0) * (x1 - x0)))
                        }
                    }
                } else {
                    for y in 0..<newHeight {
                        let fy = max(0, (Double(y) + 0.5) * sy - 0.5)
                        let y0 = min(height - 1, Int(fy)), y1 = min(height - 1, y0 + 1)
                        let wy = fy - Double(y0)
                        for x in 0..<newWidth {
                            let fx = max(0, (Double(x) + 0.5) * sx - 0.5)
                            let x0 = min(width - 1, Int(fx)), x1 = min(width - 1, x0 + 1)
                            let wx = fx - Double(x0)
                            let top = Double(input[y0 * width + x0]) * (1 - wx) + Double(input[y0 * width + x1]) * wx
                            let bottom = Double(input[y1 * width + x0]) * (1 - wx) + Double(input[y1 * width + x1]) * wx
                            output[y * newWidth + x] = UInt8(min(255, max(0, (top * (1 - wy) + bottom * wy).rounded())))
                        }
                    }
                }
            }
        }
        return GrayImage(width: newWidth, height: newHeight, pixels: out)
    }

    /// Scaled so that its longer side is at most `side` (unchanged when it already is).
    public func fitting(longSide side: Int) -> GrayImage {
        let long = max(width, height)
        return long <= side ? self : scaled(by: Double(side) / Double(long))
    }

    /// The part inside `rect`, clipped to the image (nil when nothing is left).
    public func cropped(_ rect: PixelRect) -> GrayImage? {
        let x0 = max(0, rect.x), y0 = max(0, rect.y)
        let x1 = min(width, rect.x + rect.width), y1 = min(height, rect.y + rect.height)
        guard x1 - x0 >= 8, y1 - y0 >= 8 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity((x1 - x0) * (y1 - y0))
        for y in y0..<y1 { out.append(contentsOf: pixels[(y * width + x0)..<(y * width + x1)]) }
        return GrayImage(width: x1 - x0, height: y1 - y0, pixels: out)
    }

    /// Levels stretched so that the darkest 1 % become black and the brightest 1 % white: low
    /// contrast and glare washed labels get their bars back.
    public func contrastStretched() -> GrayImage {
        var histogram = [Int](repeating: 0, count: 256)
        for pixel in pixels { histogram[Int(pixel)] += 1 }
        let cut = pixels.count / 100
        var low = 0, seen = 0
        while low < 255, seen + histogram[low] <= cut { seen += histogram[low]; low += 1 }
        var high = 255
        seen = 0
        while high > 0, seen + histogram[high] <= cut { seen += histogram[high]; high -= 1 }
        guard high - low >= 8 else { return self }
        let table = (0..<256).map { value -> UInt8 in
            UInt8(min(255, max(0, (value - low) * 255 / (high - low))))
        }
        return GrayImage(width: width, height: height, pixels: pixels.map { table[Int($0)] })
    }

    /// Black and white at the threshold that best separates the histogram's two classes (Otsu).
    public func binarized() -> GrayImage {
        let threshold = otsuThreshold()
        return GrayImage(width: width, height: height, pixels: pixels.map { $0 > threshold ? 255 : 0 })
    }

    /// Black and white against the mean of each pixel's neighbourhood (`radius` pixels), so an
    /// uneven light (glare, shadow) does not swallow one side of the label.
    public func adaptivelyBinarized(radius: Int, offset: Int = 8) -> GrayImage {
        // Integral image of the whole picture: each mean is four lookups.
        var integral = [Int](repeating: 0, count: (width + 1) * (height + 1))
        for y in 0..<height {
            var row = 0
            for x in 0..<width {
                row += Int(pixels[y * width + x])
                integral[(y + 1) * (width + 1) + x + 1] = integral[y * (width + 1) + x + 1] + row
            }
        }
        var out = [UInt8](repeating: 0, count: pixels.count)
        for y in 0..<height {
            let y0 = max(0, y - radius), y1 = min(height, y + radius + 1)
            for x in 0..<width {
                let x0 = max(0, x - radius), x1 = min(width, x + radius + 1)
                let sum = integral[y1 * (width + 1) + x1] - integral[y0 * (width + 1) + x1] - integral[y1 * (width + 1) + x0] + integral[y0 * (width + 1) + x0]
                let mean = sum / ((y1 - y0) * (x1 - x0))
                out[y * width + x] = Int(pixels[y * width + x]) + offset > mean ? 255 : 0
            }
        }
        return GrayImage(width: width, height: height, pixels: out)
    }

    /// Each pixel the mean of its 3×3 neighbourhood: softens the steps of an enlarged pixel font.
    public func smoothed() -> GrayImage {
        var out = pixels
        for y in 1..<max(1, height - 1) {
            for x in 1..<max(1, width - 1) {
                var sum = 0
                for dy in -1...1 { for dx in -1...1 { sum += Int(pixels[(y + dy) * width + x + dx]) } }
                out[y * width + x] = UInt8(sum / 9)
            }
        }
        return GrayImage(width: width, height: height, pixels: out)
    }

    func otsuThreshold() -> UInt8 {
        var histogram = [Int](repeating: 0, count: 256)
        for pixel in pixels { histogram[Int(pixel)] += 1 }
        let total = Double(pixels.count)
        let sumAll = (0..<256).reduce(0.0) { $0 + Double($1 * histogram[$1]) }
        var (sumBackground, weightBackground, best, threshold) = (0.0, 0.0, -1.0, 127)
        for value in 0..<256 {
            weightBackground += Double(histogram[value])
            if weightBackground == 0 { continue }
            let weightForeground = total - weightBackground
            if weightForeground == 0 { break }
            sumBackground += Double(value * histogram[value])
            let meanBackground = sumBackground / weightBackground
            let meanForeground = (sumAll - sumBackground) / weightForeground
            let between = weightBackground * weightForeground * (meanBackground - meanForeground) * (meanBackground - meanForeground)
            if between > best { (best, threshold) = (between, value) }
        }
        return UInt8(threshold)
    }
}

/// A rectangle in pixels.
public struct PixelRect: Sendable, Equatable {
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int

    public init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }

    /// Grown by `dx` left and right and `dy` above and below.
    public func inset(dx: Int, dy: Int) -> PixelRect {
        PixelRect(x: x - dx, y: y - dy, width: width + 2 * dx, height: height + 2 * dy)
    }
}
