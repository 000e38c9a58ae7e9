#include <pybind11/stl.h>

#include <string>

#include "bindings.hpp"
#include "pi_native/allocation.hpp"

namespace pi_native {

void bind_allocation(py::module_& m) {
  m.def(
      "mck_solve",
      [](const std::vector<std::vector<int64_t>>& units, const std::vector<std::vector<double>>& values,
         int64_t capacity) -> py::object {
        if (units.size() != values.size())
          throw py::value_error("mck_solve: " + std::to_string(units.size()) + " layers of costs but " +
                                std::to_string(values.size()) + " of values");
        if (capacity < 0) throw py::value_error("mck_solve: capacity must be >= 0");
        for (size_t i = 0; i < units.size(); ++i) {
          if (units[i].empty() || units[i].size() != values[i].size())
            throw py::value_error("mck_solve: layer " + std::to_string(i) + " needs as many costs as values (>= 1)");
          for (int64_t u : units[i])
            if (u < 0) throw py::value_error("mck_solve: costs must be >= 0");
        }
        if (static_cast<double>(units.size()) * static_cast<double>(capacity + 1) > 4e9)
          throw py::value_error("mck_solve: layers x (capacity + 1) is too large; scale the costs down");
        std::vector<int32_t> choice;
        bool ok;
        {
          py::gil_scoped_release nogil;
          ok = mck_solve(units, values, capacity, choice);
        }
        if (!ok) return py::none();
        return py::cast(choice);
      },
      py::arg("units"), py::arg("values"), py::arg("capacity"),
      "Multiple-choice knapsack over integer costs: the option per layer maximizing the summed "
      "value with summed cost <= capacity (ties: earlier option, then lower total cost), or None "
      "when nothing fits.");

  m.def(
      "pareto_front_min",
      [](py::array_t<double, py::array::c_style | py::array::forcecast> q) {
        if (q.ndim() != 2) throw py::value_error("pareto_front_min needs an (n, d) array");
        const int64_t n = q.shape(0), d = q.shape(1);
        std::vector<int64_t> front;
        {
          py::gil_scoped_release nogil;
          front = pareto_front_min(q.data(), n, d);
        }
        return front;
      },
      py::arg("q"),
      "Indices (ascending) of the non-dominated rows of q, lower being better in every column; "
      "exact duplicates of a front point all stay.");
}

}  // namespace pi_native
